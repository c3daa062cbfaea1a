"""Stand-ins for the engine's parts: a fake stage, a held action and a clock that stands still.

Each fake stage returns a string naming what it computed, so runtime and
mailbox tests see exactly which message reached which stage, in which order
each worker ran its actions, and how a failure or a timeout stops every worker.

``Hold`` and ``StoppedClock`` make the timeout and interrupt tests independent
of the machine's load. With a real clock and a sleeping stage, a busy machine
can reach the deadline before any worker has begun an action (the message then
names none), or finish the sleep before the interrupt lands. Here the held
action blocks until the runtime has stopped the step, and the deadline passes
exactly when the test says so, after the held action has begun. Every wait is
a 30 s watchdog, never a measurement.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import torch
from torch import nn

from gpipe_core.schedules.schedule import Action

WATCHDOG_S = 30.0


class StoppedClock:
    """``time`` for engine.runtime: ``monotonic()`` stands still until ``expire()``; the rest is real time."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def expire(self) -> None:
        self.now = float("inf")  # past any deadline

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class Hold:
    """An action that never returns by itself: ``hold()`` blocks until ``release`` is set."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self) -> None:
        self.entered.set()
        self.release.wait(WATCHDOG_S)

    def once_entered(self, runtime: Any, then: Any) -> None:
        """In a thread: when the held action has begun, call ``then``; when the runtime has stopped, release it.

        The runtime stops its workers before it waits for them (its step's ``abort``), so
        the release comes after the timeout or interrupt has been raised. On one
        core the single worker checks its deadline only between actions, so
        there the action is released at once.
        """
        def run() -> None:
            if self.entered.wait(WATCHDOG_S):
                then()
                if runtime.workers > 1:
                    runtime.step.abort.wait(WATCHDOG_S)  # the moment the runtime stops its workers
            self.release.set()

        threading.Thread(target=run, name="test-hold", daemon=True).start()


class FakeStage:
    """Records (kind, micro-batch, what it received) and passes a label downstream or upstream."""

    def __init__(self, index: int, fail: Action | None = None, sleep: float = 0.0, hold: Hold | None = None) -> None:
        self.index, self.device, self.stream = index, torch.device("cpu"), None
        self.module = nn.Linear(1, 1)
        self.fail, self.sleep, self.hold = fail, sleep, hold
        self.calls: list[tuple[str, int, Any]] = []
        self.events: list[tuple[int, str, Any, Any]] = []
        self.thread: set[str] = set()

    def begin_step(self, chunks: int, seed: int, loss: Any, meter: Any) -> None:
        self.calls.clear()
        self.has_loss = loss is not None

    def _do(self, kind: str, i: int, got: Any) -> str:
        self.thread.add(threading.current_thread().name)
        if self.fail == Action(kind, i, self.index):
            raise RuntimeError("fake failure")
        if self.hold is not None:
            self.hold()
        time.sleep(self.sleep)
        self.calls.append((kind, i, got))
        self.events.append((i, kind, 0.0, 0.0))
        return f"{kind}{i}@{self.index}"

    def forward(self, i: int, x: Any) -> Any:
        return self._do("F", i, x)

    def backward(self, i: int, g: Any) -> Any:
        return self._do("B", i, g)

    def backward_input(self, i: int, g: Any) -> Any:
        return self._do("I", i, g)

    def backward_weight(self, i: int) -> None:
        self._do("W", i, None)

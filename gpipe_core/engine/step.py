"""One step's state and the body every worker runs for each action.

Everything a step changes lives in a :class:`Step` made fresh for it, never
on the long-lived :class:`~gpipe_core.engine.runtime.Runtime`: the messages in
flight, the last stage's outputs, the action each worker is in (for a
timeout's message), the shortest time each stage and kind took (what the
mailbox expects of the next step), and the first failure. A step that fails
or is interrupted therefore leaves nothing behind for the next one.

Both executors run an action through the same :meth:`Step.execute`; a
worker thread walks its order with :meth:`Step.walk`, which also times each
action for the mailbox and stops at the first failure anywhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import torch

from ..schedules.schedule import Action
from .common import StageError
from .mailbox import Aborted, Link, Post
from .stage import Stage, on_stream


class Step:
    """The state of one step over ``stages``: created by :meth:`Runtime.run`, dropped when it returns."""

    def __init__(self, stages: Sequence[Stage], inputs: Sequence[Any], worker_of_stage: Sequence[int], workers: int,
                 link: Link | None, shortest: dict[tuple[int, str], float]) -> None:
        self.stages, self.inputs, self.last = stages, inputs, len(stages) - 1
        self.post = Post(worker_of_stage, workers, link)
        self.outputs: dict[int, Any] = {}
        self.current: list[Action | None] = [None] * workers  # the action each worker is in
        self.expected = shortest  # the last step's shortest times: what the mailbox expects of this one
        self.seen: dict[tuple[int, str], float] = {}  # this step's shortest times
        self.abort = threading.Event()
        self.error: BaseException | None = None
        self.lock = threading.Lock()

    def execute(self, w: int, action: Action) -> None:
        """Run ``action`` on worker ``w``: receive what it needs, call its stage, send what it made."""
        s, i, kind = action.stage, action.microbatch, action.kind
        stage, last, post = self.stages[s], s == self.last, self.post
        self.current[w] = action
        if kind == "F":
            out = stage.forward(i, self.inputs[i] if s == 0 else post.recv(w, stage, "F", i))
            if last:
                self.outputs[i] = out
            else:
                post.send(stage, self.stages[s + 1], "F", i, out)
        elif kind == "W":
            stage.backward_weight(i)
        else:
            grad = None if last else post.recv(w, stage, "G", i)
            grad_in = stage.backward(i, grad) if kind == "B" else stage.backward_input(i, grad)
            if s > 0:
                post.send(stage, self.stages[s - 1], "G", i, grad_in)
        self.current[w] = None

    def run(self, w: int, action: Action) -> None:
        """:meth:`execute` on the stage's device and stream (CUDA), or directly (CPU)."""
        stage = self.stages[action.stage]
        if stage.stream is None:
            self.execute(w, action)
        else:
            with on_stream(stage):
                self.execute(w, action)

    def walk(self, w: int, order: Sequence[Action], threads: int, grad: bool) -> None:
        """Worker ``w``'s thread: run ``order`` until done, aborted or failed, timing each action."""
        torch.set_num_threads(threads)
        outbox, clock, never, seen = self.post.outbox[w], time.perf_counter, float("inf"), self.seen
        keys = [(a.stage, a.kind) for a in order]
        # what the mailbox expects each next action to cost, from the last step; after the last action: never
        upcoming = [self.expected.get(k, never) for k in keys[1:]] + [never]
        with torch.set_grad_enabled(grad):
            for action, key, next_cost in zip(order, keys, upcoming):
                if self.abort.is_set():
                    return
                outbox.next_cost = next_cost
                start = clock()
                try:
                    self.run(w, action)
                except Aborted:
                    return
                except BaseException as exc:  # noqa: BLE001 - every failure must reach the caller
                    self.fail(action, exc)
                    return
                end = clock()
                if end - start < seen.get(key, never):
                    seen[key] = end - start
                outbox.tick(end)

    def busy(self) -> str:
        """The actions workers are in, for a timeout's message."""
        return ", ".join(f"stage {a.stage} in {a}" for a in self.current if a is not None)

    def stop(self) -> None:
        """Ask every worker to stop and wake the ones blocked on an inbox."""
        self.abort.set()
        self.post.abort()

    def fail(self, action: Action, exc: BaseException) -> None:
        """Keep the first failure, naming its stage and action, and stop every worker."""
        with self.lock:
            if self.error is None:
                error = StageError(action.stage, action, exc)
                error.__cause__ = exc
                self.error = error
        self.stop()

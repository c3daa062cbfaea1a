"""A stand-in for the engine's Stage: no autograd, just a record of what it was asked to do.

Each fake stage returns a string naming what it computed, so runtime and
mailbox tests see exactly which message reached which stage, in which order
each worker ran its actions, and how a failure or a timeout stops every worker.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import torch
from torch import nn

from gpipe_core.schedule import Action


class FakeStage:
    """Records (kind, micro-batch, what it received) and passes a label downstream or upstream."""

    def __init__(self, index: int, fail: Action | None = None, sleep: float = 0.0) -> None:
        self.index, self.device, self.stream = index, torch.device("cpu"), None
        self.module = nn.Linear(1, 1)
        self.fail, self.sleep = fail, sleep
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

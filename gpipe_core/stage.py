"""One partition on one device.

A stage owns a contiguous slice of the model, a device, a private random
stream and the policy that decides what it keeps between forward and
backward. The runtime asks it for two things only: ``forward(i, x)`` and
``backward(i, grad)``. Backward is explicit: the stage calls autograd on its
own output with the gradient that came from downstream, which is what lets
the schedule (not one ``loss.backward()``) decide when each backward runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import STORE, policy_for
from .memory import MemoryMeter
from .rng import NO_RANDOM, StageRandom

LossFn = Callable[[Tensor, Tensor], Tensor]


class Stage:
    """Layers ``module`` of stage ``index`` on ``device``."""

    def __init__(self, index: int, module: nn.Sequential, device: torch.device, checkpoint: object) -> None:
        self.index = index
        self.module = module
        self.device = torch.device(device)
        self.checkpoint = checkpoint
        self.rng = StageRandom(module, self.device)
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self.meter: MemoryMeter | None = None
        self._saved: dict[int, tuple[Any, Any, object]] = {}
        self.outputs: dict[int, Tensor] = {}
        self.losses: dict[int, Tensor] = {}
        self.events: list[tuple[int, str, Any, Any]] = []  # (micro-batch, kind, start, end)
        self._recompute_end: Any = None
        self.now: Callable[[], Any] = time.perf_counter if self.stream is None else self._cuda_now

    def begin_step(self, chunks: int, base_seed: int, loss: tuple[LossFn, list[Tensor], list[float]] | None,
                   measure_memory: bool) -> None:
        """Forget the last step and get ready for a new one."""
        self.chunks, self.base_seed, self.loss = chunks, base_seed, loss
        self._policies = [policy_for(self.checkpoint, i, chunks) for i in range(chunks)]
        self._saved.clear()
        self.outputs.clear()
        self.losses.clear()
        self.events.clear()
        self.meter = MemoryMeter(list(self.module.parameters())) if measure_memory else None

    def _run_fn(self, microbatch: int) -> Callable[[Tensor], Tensor]:
        if self.loss is None:
            return self.module
        loss_fn, targets, weights = self.loss
        target, weight = targets[microbatch], weights[microbatch]

        def run(x: Tensor) -> Tensor:
            return loss_fn(self.module(x), target) * weight

        return run

    def _random(self, microbatch: int) -> Any:
        """The stage's stream, seeded for this micro-batch; a no-op stand-in when nothing is random."""
        if not self.rng.has_random_layers:
            return NO_RANDOM
        self.rng.seed(self.base_seed, microbatch, self.index)
        return self.rng

    def forward(self, microbatch: int, x: Tensor) -> Tensor:
        """Run micro-batch ``microbatch``; keep what backward needs; return the output to send."""
        start = self.now()
        grad = torch.is_grad_enabled()
        if grad and self.index > 0 and x.is_floating_point():
            x = x.detach().requires_grad_()  # upstream needs this input's gradient
        rng = self._random(microbatch)
        policy = self._policies[microbatch]
        run = self._run_fn(microbatch)
        if not grad:  # inference: keep nothing
            with rng.active():
                out, saved = run(x), None
        elif rng is NO_RANDOM and self.meter is None:  # the common case, without context managers
            out, saved = policy.forward(run, x, rng)
        else:
            with rng.active(), (self.meter.saving() if self.meter is not None else nullcontext()):
                out, saved = policy.forward(run, x, rng)
        token = self.meter.hold(x) if (self.meter is not None and saved is not None) else None
        self._saved[microbatch] = (policy, saved, token)
        if self.loss is not None:
            self.losses[microbatch] = out.detach()
        self.events.append((microbatch, "F", start, self.now()))
        return out

    def backward(self, microbatch: int, grad: Tensor | None) -> Tensor | None:
        """Back-propagate ``grad`` (None on the last stage, whose output is the loss)."""
        try:
            policy, saved, token = self._saved.pop(microbatch)
        except KeyError:
            raise RuntimeError(
                f"backward of micro-batch {microbatch} on stage {self.index} before its forward: "
                "the schedule must run F before B"
            ) from None
        start = self.now()
        self._recompute_end = None
        rng = self.rng if self.rng.has_random_layers else NO_RANDOM
        run = self._run_fn(microbatch)
        if policy is not STORE:
            run = self._timed(microbatch, run)
        if rng is NO_RANDOM and self.meter is None:
            grad_in = policy.backward(run, saved, grad, rng)
        else:
            with rng.active(), (self.meter.saving() if self.meter is not None else nullcontext()):
                grad_in = policy.backward(run, saved, grad, rng)
        del saved, token
        b_start = self._recompute_end if self._recompute_end is not None else start
        self.events.append((microbatch, "B", b_start, self.now()))
        return grad_in if self.index > 0 else None

    def _timed(self, microbatch: int, run: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        """Record a forward that a policy runs during backward as a recomputation."""

        def timed(x: Tensor) -> Tensor:
            start = self.now()
            out = run(x)
            self._recompute_end = self.now()
            self.events.append((microbatch, "R", start, self._recompute_end))
            return out

        return timed

    def _cuda_now(self) -> Any:
        """A timestamp for the trace on CUDA: an event recorded on the stage's stream (``now`` on CPU is host time)."""
        event = torch.cuda.Event(enable_timing=True)
        event.record(self.stream)
        return event

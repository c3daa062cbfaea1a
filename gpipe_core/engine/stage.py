"""One partition on one device.

A stage owns a contiguous slice of the model, a device, a private random
stream and the policy that decides what it keeps between forward and
backward. The runtime asks it for four things: ``forward(i, x)``,
``backward(i, grad)`` (B), and the two halves of a split backward,
``backward_input(i, grad)`` (I) and ``backward_weight(i)`` (W). Backward is
explicit: the stage calls autograd on its own output with the gradient that
came from downstream, which is what lets the schedule (not one
``loss.backward()``) decide when each backward runs.

A forward that a policy runs again during backward is a recomputation: it is
timed as ``R``, :func:`~gpipe_core.engine.checkpoint.is_recomputing` is True inside it,
and it works on copies of the stage's buffers (the originals are put back
untouched afterwards, so autograd's saved references stay valid), so running
statistics and counters change once per micro-batch, as without recomputation.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from . import split_backward, tensors
from .checkpoint import STORE, policies_for, recomputing
from .common import Loss
from .memory import MemoryMeter
from .rng import NO_RANDOM, StageRandom
from .trace import Clock, Stamp


class Stage:
    """Layers ``module`` of stage ``index`` on ``device``."""

    def __init__(self, index: int, module: nn.Module, device: torch.device, checkpoint: object,
                 clock: Clock | None = None) -> None:
        self.index = index
        self.module = module
        self.device = torch.device(device)
        self.checkpoint = checkpoint
        self.rng = StageRandom(module, self.device)
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self.clock = clock or Clock()
        self.meter: MemoryMeter | None = None
        self.loss: Loss | None = None
        self.events: list[Stamp] = []
        self._saved: dict[int, tuple[Any, Any, object]] = {}
        self._pending: dict[int, tuple[split_backward.WeightWork, object]] = {}
        self._buffers = [(m, name) for m in module.modules() for name, b in m._buffers.items() if b is not None]
        self._policies: tuple[int, list[Any]] = (0, [])
        self._recompute_end: Any = None

    def begin_step(self, chunks: int, base_seed: int, loss: Loss | None, meter: MemoryMeter | None) -> None:
        """Forget the last step and get ready for a new one."""
        if self._policies[0] != chunks:  # resolved once per M, not per micro-batch per step
            self._policies = (chunks, policies_for(self.checkpoint, chunks))
        self.base_seed, self.loss, self.meter = base_seed, loss, meter
        self._saved.clear()
        self._pending.clear()
        self.events.clear()

    def _now(self) -> Any:
        return self.clock.now(self.stream)

    def _run_fn(self, microbatch: int) -> Callable[[Any], Any]:
        if self.loss is None:
            return self.module
        loss = self.loss
        return lambda x: loss.of(self.module(x), microbatch)

    def _random(self, microbatch: int) -> Any:
        """The stage's stream, seeded for this micro-batch; a no-op stand-in when nothing is random."""
        if not self.rng.has_random_layers:
            return NO_RANDOM
        self.rng.seed(self.base_seed, microbatch, self.index)
        return self.rng

    def _context(self, rng: Any) -> Any:
        """Dropout on the stage's stream and saved tensors counted; nothing at all in the common case."""
        if rng is NO_RANDOM and self.meter is None:
            return nullcontext()
        return _Both(rng.active(), self.meter.saving() if self.meter is not None else nullcontext())

    def forward(self, microbatch: int, x: Any) -> Any:
        """Run micro-batch ``microbatch``; keep what backward needs; return the output to send (the loss, last)."""
        start = self._now()
        grad = torch.is_grad_enabled()
        if grad and self.index > 0:
            x = tensors.leaves(x, True)  # upstream needs these inputs' gradients
        rng = self._random(microbatch)
        policy = self._policies[1][microbatch]
        run = self._run_fn(microbatch)
        with self._context(rng):
            if grad:
                out, saved = policy.forward(run, x, rng)
            else:  # inference: keep nothing
                out, saved = run(x), None
        if saved is not None:
            token = [self.meter.hold(t) for t in tensors.as_tuple(x)] if self.meter is not None else None
            self._saved[microbatch] = (policy, saved, token)
        self.events.append(Stamp(microbatch, "F", start, self._now()))
        return out

    def _take(self, microbatch: int) -> tuple[Any, Any, object]:
        try:
            return self._saved.pop(microbatch)
        except KeyError:
            raise RuntimeError(f"backward of micro-batch {microbatch} on stage {self.index} before its forward: "
                               "the schedule must run F before B (or I)") from None

    def _backward_run(self, microbatch: int, policy: Any) -> Callable[[Any], Any]:
        self._recompute_end = None
        run = self._run_fn(microbatch)
        return run if policy is STORE else self._recompute(microbatch, run)

    def backward(self, microbatch: int, grad: Any) -> Any:
        """B: back-propagate ``grad`` (None on the last stage, whose output is the loss)."""
        policy, saved, token = self._take(microbatch)
        start = self._now()
        run = self._backward_run(microbatch, policy)
        rng = self.rng if self.rng.has_random_layers else NO_RANDOM
        with self._context(rng):
            grad_in = policy.backward(run, saved, grad, rng)
        del saved, token
        self._event(microbatch, "B", start)
        return grad_in if self.index > 0 else None

    def backward_input(self, microbatch: int, grad: Any) -> Any:
        """I: the input's gradient now; what the weights need is kept for :meth:`backward_weight`."""
        policy, saved, token = self._take(microbatch)
        graph = getattr(policy, "graph", None)
        if graph is None:
            raise TypeError(f"checkpoint policy {type(policy).__name__} has no graph(run, saved, rng): a split "
                            "backward (I and W) needs the live graph; add graph() or use a schedule with B actions")
        start = self._now()
        run = self._backward_run(microbatch, policy)
        rng = self.rng if self.rng.has_random_layers else NO_RANDOM
        with self._context(rng):
            x, out = graph(run, saved, rng)
            grad_in, work = split_backward.backward_input(out, grad, x, self.module.parameters())
        self._pending[microbatch] = (work, token)
        self._event(microbatch, "I", start)
        return grad_in if self.index > 0 else None

    def backward_weight(self, microbatch: int) -> None:
        """W: the weight gradients of micro-batch ``microbatch``, accumulated into ``.grad``."""
        try:
            work, token = self._pending.pop(microbatch)
        except KeyError:
            raise RuntimeError(f"W of micro-batch {microbatch} on stage {self.index} before its I: "
                               "the schedule must run I before W") from None
        start = self._now()
        work.run()
        del work, token
        self.events.append(Stamp(microbatch, "W", start, self._now()))

    def _event(self, microbatch: int, kind: str, start: Any) -> None:
        begin = self._recompute_end if self._recompute_end is not None else start
        self.events.append(Stamp(microbatch, kind, begin, self._now()))

    def _recompute(self, microbatch: int, run: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``run`` as a recomputation: marked, timed as R, and leaving every buffer as it found it."""

        def again(x: Any) -> Any:
            start = self._now()
            kept = [m._buffers[name] for m, name in self._buffers]
            for (m, name), b in zip(self._buffers, kept):
                m._buffers[name] = b.clone()  # the recomputation updates a copy...
            try:
                with recomputing():
                    out = run(x)
            finally:
                for (m, name), b in zip(self._buffers, kept):
                    m._buffers[name] = b  # ...and the module gets its untouched buffers back
            self._recompute_end = self._now()
            self.events.append(Stamp(microbatch, "R", start, self._recompute_end))
            return out

        return again


class _Both:
    """Two context managers as one, without contextlib's overhead on the hot path."""

    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b

    def __enter__(self) -> None:
        self.a.__enter__()
        self.b.__enter__()

    def __exit__(self, *exc: object) -> None:
        try:
            self.b.__exit__(*exc)
        finally:
            self.a.__exit__(*exc)


class on_stream:  # noqa: N801 - used as a context manager, like torch.cuda.stream
    """Make the stage's device and stream current on this thread (CUDA stages only)."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self._ctx: list[Any] = []

    def __enter__(self) -> None:
        self._ctx = [torch.cuda.device(self.stage.device), torch.cuda.stream(self.stage.stream)]
        for c in self._ctx:
            c.__enter__()

    def __exit__(self, *exc: object) -> None:
        for c in reversed(self._ctx):
            c.__exit__(*exc)

"""Re-materialisation: trade one extra forward for almost all activation memory.

A checkpoint policy decides what a stage keeps between the forward and the
backward of one micro-batch. :class:`Recompute` keeps only the stage's input
and its random-generator state, then runs the forward again in backward; the
replayed dropout masks are the same, so the gradients are identical to
:class:`StoreActivations`, which keeps the whole autograd graph.

The interface is small on purpose: a learner's own policy with the same two
methods plugs into the engine (``GPipe(..., checkpoint=MyRecompute())``).

``run(x)`` executes the stage's layers (and, on the last stage, the loss);
its dropout draws from ``rng``, the stage's private generator. ``x`` is a
tensor or a tuple of tensors (see :mod:`gpipe_core.engine.tensors`). A forward that
runs again in backward is marked: :func:`is_recomputing` is True inside it, and
the stage restores every buffer it changed, so running statistics count each
micro-batch once.

The split backward of the zero-bubble schedules (I, then W) needs the live
autograd graph of a micro-batch; the engine's policies hand it over through
``graph``. A learner's policy without ``graph`` still runs every B schedule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import Tensor

from . import tensors

Run = Callable[[Any], Any]
_STATE = threading.local()


def is_recomputing() -> bool:
    """True while a checkpoint policy re-runs a forward in backward (on this thread)."""
    return getattr(_STATE, "recomputing", False)


@contextmanager
def recomputing() -> Iterator[None]:
    """Mark the forwards run in this block as recomputations."""
    previous = is_recomputing()
    _STATE.recomputing = True
    try:
        yield
    finally:
        _STATE.recomputing = previous


class RandomState(Protocol):
    def get_state(self) -> Tensor: ...
    def set_state(self, state: Tensor) -> None: ...


class CheckpointPolicy(Protocol):
    """What a stage keeps between forward and backward of one micro-batch."""

    def forward(self, run: Run, x: Tensor, rng: RandomState) -> tuple[Tensor, Any]:
        """Run the stage; return its output and whatever backward will need."""
        ...

    def backward(self, run: Run, saved: Any, grad_output: Tensor | None, rng: RandomState) -> Tensor | None:
        """Back-propagate ``grad_output`` (None for a scalar loss); return the input's gradient."""
        ...


def _leaf(x: Any) -> Any:
    """Fresh autograd leaves for the stage input; each takes a gradient iff the input tensor asks for one.

    Always new tensor objects (sharing the memory), so gradients land on them
    and never accumulate into the caller's tensors. The stage marks every float
    input but the first stage's (whose gradient nobody needs) with
    ``requires_grad``, so stage 0 skips that extra work.
    """
    return tensors.like(x, [t.detach().requires_grad_(t.requires_grad) if tensors.needs_grad(t) else t
                            for t in tensors.as_tuple(x)])


def _backward(out: Any, grad_output: Any, x: Any) -> Any:
    tensors.backward(out, grad_output)
    return tensors.grads_of(x)


class StoreActivations:
    """No re-materialisation: keep the autograd graph from forward to backward."""

    def forward(self, run: Run, x: Tensor, rng: RandomState) -> tuple[Tensor, Any]:
        x = _leaf(x)
        with torch.enable_grad():
            out = run(x)
        return tensors.detach(out), (x, out)

    def backward(self, run: Run, saved: Any, grad_output: Tensor | None, rng: RandomState) -> Tensor | None:
        x, out = saved
        return _backward(out, grad_output, x)

    def graph(self, run: Run, saved: Any, rng: RandomState) -> tuple[Any, Any]:
        """The stored graph: (input leaves, output)."""
        return saved


class Recompute:
    """Keep the input and the RNG state; recompute the forward in backward."""

    def forward(self, run: Run, x: Tensor, rng: RandomState) -> tuple[Tensor, Any]:
        state = rng.get_state()
        with torch.no_grad():
            out = run(x)
        return out, (x, state)

    def backward(self, run: Run, saved: Any, grad_output: Tensor | None, rng: RandomState) -> Tensor | None:
        x, out = self.graph(run, saved, rng)
        return _backward(out, grad_output, x)

    def graph(self, run: Run, saved: Any, rng: RandomState) -> tuple[Any, Any]:
        """Recompute the forward with autograd on, replaying the saved dropout state: (input leaves, output)."""
        x, state = saved
        rng.set_state(state)  # replay the same dropout masks
        x = _leaf(x)
        with torch.enable_grad():
            out = run(x)
        return x, out


MODES = ("always", "except_last", "never")


def check_checkpoint(checkpoint: object) -> object:
    """Return ``checkpoint`` if it is a mode name or a policy object; otherwise a ValueError naming the choices."""
    policy_for(checkpoint, 0, 1)
    return checkpoint


def policies_for(checkpoint: object, chunks: int) -> list[CheckpointPolicy]:
    """The policy of each of the ``chunks`` micro-batches."""
    return [policy_for(checkpoint, i, chunks) for i in range(chunks)]


def policy_for(checkpoint: object, microbatch: int, chunks: int) -> CheckpointPolicy:
    """The policy one micro-batch uses under a mode name or a policy object.

    ``except_last`` stores the last micro-batch: its backward follows its
    forward at once under fill-drain, so recomputing it would buy no memory.
    """
    if checkpoint == "always":
        return RECOMPUTE
    if checkpoint == "never":
        return STORE
    if checkpoint == "except_last":
        return STORE if microbatch == chunks - 1 else RECOMPUTE
    if hasattr(checkpoint, "forward") and hasattr(checkpoint, "backward"):
        return checkpoint  # type: ignore[return-value]
    raise ValueError(
        f"unknown checkpoint {checkpoint!r}: use one of {MODES} or an object with "
        "forward(run, x, rng) and backward(run, saved, grad_output, rng)"
    )


RECOMPUTE = Recompute()
STORE = StoreActivations()

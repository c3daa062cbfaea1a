"""Re-materialisation: trade one extra forward for almost all activation memory.

A checkpoint policy decides what a stage keeps between the forward and the
backward of one micro-batch. :class:`Recompute` keeps only the stage's input
and its random-generator state, then runs the forward again in backward; the
replayed dropout masks are the same, so the gradients are identical to
:class:`StoreActivations`, which keeps the whole autograd graph.

The interface is small on purpose: a learner's own policy with the same two
methods plugs into the engine (``GPipe(..., checkpoint=MyRecompute())``).

``run(x)`` executes the stage's layers (and, on the last stage, the loss);
its dropout draws from ``rng``, the stage's private generator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

Run = Callable[[Tensor], Tensor]


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


def _leaf(x: Tensor) -> Tensor:
    """A fresh autograd leaf for the stage input; it takes a gradient iff the input asks for one.

    Always a new tensor object (sharing the memory), so the gradient lands on it
    and never accumulates into the caller's tensor. The runtime marks every
    stage input but the first stage's (whose gradient nobody needs) with
    ``requires_grad``, so stage 0 skips that extra work.
    """
    return x.detach().requires_grad_(x.requires_grad)


def _backward(out: Tensor, grad_output: Tensor | None, x: Tensor) -> Tensor | None:
    if out.requires_grad:
        torch.autograd.backward(out, grad_output)
    return x.grad if x.requires_grad else None


class StoreActivations:
    """No re-materialisation: keep the autograd graph from forward to backward."""

    def forward(self, run: Run, x: Tensor, rng: RandomState) -> tuple[Tensor, Any]:
        x = _leaf(x)
        with torch.enable_grad():
            out = run(x)
        return out.detach(), (x, out)

    def backward(self, run: Run, saved: Any, grad_output: Tensor | None, rng: RandomState) -> Tensor | None:
        x, out = saved
        return _backward(out, grad_output, x)


class Recompute:
    """Keep the input and the RNG state; recompute the forward in backward."""

    def forward(self, run: Run, x: Tensor, rng: RandomState) -> tuple[Tensor, Any]:
        state = rng.get_state()
        with torch.no_grad():
            out = run(x)
        return out, (x, state)

    def backward(self, run: Run, saved: Any, grad_output: Tensor | None, rng: RandomState) -> Tensor | None:
        x, state = saved
        rng.set_state(state)  # replay the same dropout masks
        x = _leaf(x)
        with torch.enable_grad():
            out = run(x)
        return _backward(out, grad_output, x)


MODES = ("always", "except_last", "never")


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

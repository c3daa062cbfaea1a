"""What travels between stages: one tensor, or a tuple of tensors.

Real models hand more than one tensor down the pipe: an attention mask next
to the activations, a skip connection carried past a stage, integer token ids
beside float features. The engine treats such a value as a flat tuple. Every
floating-point tensor in it gets a fresh autograd leaf on the receiving stage
and its gradient is sent back; integer tensors and constants pass through
untouched. These few helpers are the only place that knows the difference
between a tensor and a tuple, so the stages and policies stay short.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

Value = Any  # a Tensor or a tuple of Tensors

try:  # torch's backward without its Python argument handling, about 15 us a call: a tenth of a small stage's B
    from torch.autograd.graph import _engine_run_backward
except ImportError:  # a torch without it takes the public path
    _engine_run_backward = None


def as_tuple(value: Value) -> tuple[Any, ...]:
    return value if type(value) is tuple else (value,)


def like(template: Value, items: tuple[Any, ...] | list[Any]) -> Value:
    """``items`` shaped like ``template``: a bare item for a tensor, a tuple for a tuple."""
    return tuple(items) if type(template) is tuple else items[0]


def check(value: Value, what: str) -> None:
    """Raise a clear error unless ``value`` is a tensor or a non-empty tuple of tensors."""
    items = as_tuple(value)
    if not items or not all(isinstance(t, Tensor) for t in items):
        kinds = ", ".join(type(t).__name__ for t in items) or "an empty tuple"
        raise TypeError(
            f"{what} must be a tensor or a tuple of tensors, got {kinds}: pass constants to the layers "
            "when you build them, and wrap several tensors in a tuple"
        )


def needs_grad(t: Any) -> bool:
    return isinstance(t, Tensor) and t.is_floating_point()


def leaves(value: Value, requires_grad: bool) -> Value:
    """Fresh autograd leaves (sharing memory) for the float tensors of ``value``; others as they are."""
    if type(value) is Tensor and value.is_floating_point():  # the common case, without the tuple machinery
        return value.detach().requires_grad_(requires_grad)
    return like(value, [t.detach().requires_grad_(requires_grad) if needs_grad(t) else t
                        for t in as_tuple(value)])


def detach(value: Value) -> Value:
    if type(value) is Tensor:
        return value.detach()
    return like(value, [t.detach() if isinstance(t, Tensor) else t for t in as_tuple(value)])


def to(value: Value, device: torch.device, non_blocking: bool = False) -> Value:
    return like(value, [t.to(device, non_blocking=non_blocking) if isinstance(t, Tensor) else t
                        for t in as_tuple(value)])


def first(value: Value) -> Tensor:
    return as_tuple(value)[0]


def backward(out: Value, grad: Value | None) -> None:
    """Back-propagate ``grad`` (None: ``out`` is a scalar loss) through the outputs that carry a graph."""
    if type(out) is Tensor:
        if out.requires_grad:
            _backward_one(out, grad)
        return
    pairs = grad_pairs(out, grad)
    if pairs:
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])


def _backward_one(out: Tensor, grad: Tensor | None) -> None:
    """``torch.autograd.backward(out, grad)``; a plain tensor with a matching gradient goes to the engine directly."""
    if grad is None and out.numel() == 1:
        grad = torch.ones_like(out, memory_format=torch.preserve_format)
    direct = (_engine_run_backward is not None and type(grad) is Tensor and grad.shape == out.shape
              and grad.dtype == out.dtype and grad.device == out.device
              and not torch._C._are_functorch_transforms_active())
    if not direct:  # anything unusual gets torch's own checks and messages
        torch.autograd.backward(out, grad)
        return
    _engine_run_backward((out,), (grad,), False, False, (), allow_unreachable=True, accumulate_grad=True)


def grad_pairs(out: Value, grad: Value | None) -> list[tuple[Tensor, Tensor | None]]:
    """(output, its gradient) for every output with a graph and a gradient to push through it."""
    outs = as_tuple(out)
    grads = (None,) * len(outs) if grad is None else as_tuple(grad)
    return [(o, g) for o, g in zip(outs, grads)
            if isinstance(o, Tensor) and o.requires_grad and (g is not None or grad is None)]


def grads_of(x: Value) -> Value | None:
    """The gradients that landed on the leaves ``x`` (None for tensors that take none)."""
    if type(x) is Tensor:
        return x.grad if x.requires_grad else None
    items = as_tuple(x)
    grads = [t.grad if isinstance(t, Tensor) and t.requires_grad else None for t in items]
    if all(g is None for g in grads):
        return None
    return like(x, grads)

"""Layers whose forward, input gradient and weight gradient take known times: the simulator's test bench.

Why: to hold the simulator's prediction against the real engine, the engine
must run actions whose costs are known in advance, on any machine, however
busy. A layer that *sleeps* its cost does that: a sleeping worker holds no
core and no GIL, so K workers on two cores still run side by side, and the
only unknowns left are the engine's own (threads, messages, autograd), which
is what the check is about. Communication is injected the same way
(:func:`gpipe_core.sim.comm.inject`).

:class:`Wait` is the identity on its input plus a zero weight, built so that
each of the engine's actions runs exactly one sleep of its own:

* F sleeps ``forward``;
* I (the input's gradient) runs the input branch's backward, which sleeps
  ``input_grad``; the weight branch is not on the input's path, so autograd
  skips it (see :mod:`gpipe_core.engine.split_backward`);
* W runs the weight branch's backward, which sleeps ``weight_grad``;
* B runs both.

Stage 0's input needs no gradient, so there autograd never runs the input
branch: its I costs nothing and its B only ``weight_grad``, exactly as a real
first stage skips its input-gradient matmul. :func:`wait_costs` says so to
the simulator.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn

from .comm import Comm
from .simulate import Costs


class _Sleep(torch.autograd.Function):
    """Identity that sleeps ``ahead`` seconds in forward and ``back`` in backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, ahead: float, back: float) -> Tensor:  # noqa: ANN401
        ctx.back = back
        if ahead > 0:
            time.sleep(ahead)
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # noqa: ANN401
        if ctx.back > 0:
            time.sleep(ctx.back)
        return grad, None, None


class Wait(nn.Module):
    """``x + w`` (w starts at zero) whose F, I and W sleep ``forward``, ``input_grad``, ``weight_grad`` seconds."""

    def __init__(self, width: int, forward: float, input_grad: float, weight_grad: float) -> None:
        super().__init__()
        if min(forward, input_grad, weight_grad) < 0:
            raise ValueError("a Wait layer's times must be >= 0 seconds")
        self.weight = nn.Parameter(torch.zeros(width))
        self.forward_s, self.input_s, self.weight_s = forward, input_grad, weight_grad

    def forward(self, x: Tensor) -> Tensor:
        return _Sleep.apply(x, self.forward_s, self.input_s) + _Sleep.apply(self.weight, 0.0, self.weight_s)


def wait_model(stages: int, width: int, forward: float, input_grad: float, weight_grad: float) -> nn.Sequential:
    """One :class:`Wait` layer per stage (build the GPipe with ``balance=[1] * stages``)."""
    return nn.Sequential(*[Wait(width, forward, input_grad, weight_grad) for _ in range(stages)])


def wait_costs(stages: int, forward: float, input_grad: float, weight_grad: float,
               comm: Comm | None = None) -> Costs:
    """The simulator's costs of :func:`wait_model`: stage 0 computes no input gradient (module docstring)."""
    inputs = [0.0] + [input_grad] * (stages - 1)
    return Costs(forward=forward, backward=[i + weight_grad for i in inputs], input_grad=inputs,
                 weight_grad=weight_grad, comm=comm)

"""The sequential model the engine must equal.

Correctness in this course means: the pipeline leaves the same loss and the
same gradients as the plain model run on one device, one layer after another.
With dropout the plain model needs the engine's seeding rule to draw the same
masks, so this module replays it: micro-batch i through stage j's layers runs
right after ``torch.manual_seed(stage_seed(seed, i, j))``. Nothing else of the
engine is used: no threads, no schedules, no checkpointing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .common import LossFn
from .microbatch import loss_weights, split
from .partition import split_module
from .rng import stage_seed


def sequential_step(module: nn.Sequential, x: Tensor, target: Tensor, loss_fn: LossFn, *,
                    balance: Sequence[int] | None = None, chunks: int = 1, seed: int = 0,
                    reduction: str = "mean") -> Tensor:
    """Forward and backward of ``module`` one micro-batch at a time; returns the full-batch loss.

    Gradients accumulate into ``.grad`` as with ``loss.backward()``. Without
    dropout the result equals one full-batch ``loss_fn(module(x), target).backward()``;
    ``reduction`` says whether ``loss_fn`` averages ("mean") or adds ("sum") over the batch.
    """
    parts = split_module(module, balance if balance is not None else [len(module)])
    xs, ts = split(x, chunks), torch.tensor_split(target, chunks, dim=0)
    total = torch.zeros(())
    with torch.random.fork_rng(devices=[]):
        for i, (xi, ti, wi) in enumerate(zip(xs, ts, loss_weights(xs, reduction))):
            h = xi
            for j, part in enumerate(parts):
                torch.manual_seed(stage_seed(seed, i, j))
                h = part(h)
            loss = loss_fn(h, ti) * wi
            loss.backward()
            total = total + loss.detach().cpu()
    return total


def gradients(module: nn.Module) -> list[Tensor | None]:
    """Copies of every parameter's ``.grad`` (None where there is none), in parameter order."""
    return [None if p.grad is None else p.grad.detach().clone() for p in module.parameters()]

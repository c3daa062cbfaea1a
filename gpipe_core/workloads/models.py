"""Models and a learnable task shared by the CLI, the notebooks, the book and the benchmarks.

Everything in the course runs on ``nn.Sequential`` stacks whose items are the
layers the partitioner balances. Two families:

* :func:`mlp`: ``Linear(H, H) + ReLU`` blocks, the plain stack the benchmarks
  and the paper-style measurements use (every layer costs the same);
* :func:`residual_mlp`: pre-norm residual blocks with dropout, which train
  reliably at any depth, for ``gpipe train``;
* :func:`bn_mlp`: the same depth with BatchNorm blocks, the layer that mixes
  samples and so tells micro-batches from the full batch (deferred BatchNorm).

The language model lives in :mod:`gpipe_core.workloads.gpt`.

:func:`teacher_task` makes a classification problem a deep model can learn in a
few steps: labels come from a fixed random linear teacher.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def mlp(layers: int, hidden: int, classes: int | None = None, dropout: float = 0.0) -> nn.Sequential:
    """``layers`` blocks of Linear(hidden, hidden)+ReLU (+Dropout), then an optional classifier layer."""
    blocks: list[nn.Module] = []
    for _ in range(layers):
        block = [nn.Linear(hidden, hidden), nn.ReLU()]
        if dropout:
            block.append(nn.Dropout(dropout))
        blocks.append(nn.Sequential(*block))
    if classes is not None:
        blocks.append(nn.Linear(hidden, classes))
    return nn.Sequential(*blocks)


class ResidualBlock(nn.Module):
    """x + Dropout(ReLU(Linear(LayerNorm(x)))): one pipeline-friendly layer."""

    def __init__(self, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop(torch.relu(self.fc(self.norm(x))))


def residual_mlp(layers: int, hidden: int, classes: int, dropout: float = 0.0) -> nn.Sequential:
    """``layers`` items in all: ``layers - 1`` residual blocks and a classifier head."""
    if layers < 2:
        raise ValueError(f"residual_mlp needs at least 2 layers (blocks plus the head), got {layers}")
    head = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, classes))
    return nn.Sequential(*[ResidualBlock(hidden, dropout) for _ in range(layers - 1)], head)


class BatchNormBlock(nn.Module):
    """x + Dropout(ReLU(BatchNorm(Linear(x)))): a residual layer whose normalisation mixes the samples."""

    def __init__(self, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop(torch.relu(self.norm(self.fc(x))))


def bn_mlp(layers: int, hidden: int, classes: int, dropout: float = 0.0) -> nn.Sequential:
    """``layers`` items: an input BatchNorm, ``layers - 2`` BatchNorm residual blocks and a linear head.

    The first item normalises the raw inputs, so its statistics do not depend
    on any earlier normalisation: that is the layer whose running statistics
    deferred BatchNorm makes equal to the full-batch model's.
    """
    if layers < 3:
        raise ValueError(f"bn_mlp needs at least 3 layers (input norm, a block, the head), got {layers}")
    return nn.Sequential(nn.BatchNorm1d(hidden), *[BatchNormBlock(hidden, dropout) for _ in range(layers - 2)],
                         nn.Linear(hidden, classes))


def teacher_task(samples: int, hidden: int, classes: int = 10, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Inputs x ~ N(0, I) and labels argmax(x @ W) of a fixed random teacher W."""
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(hidden, classes, generator=g)
    x = torch.randn(samples, hidden, generator=g)
    return x, (x @ teacher).argmax(dim=1)

"""Small models, seeded batches and a gradient comparison for the engine tests.

A module of its own (not conftest.py) so test files import it by a name that
no other conftest in the tree can shadow.
"""

from __future__ import annotations

import torch
from torch import nn


def small_model(layers: int = 6, hidden: int = 12, classes: int = 4, dropout: float = 0.0) -> nn.Sequential:
    torch.manual_seed(0)
    blocks = []
    for _ in range(layers - 1):
        block = [nn.Linear(hidden, hidden), nn.Tanh()]
        if dropout:
            block.append(nn.Dropout(dropout))
        blocks.append(nn.Sequential(*block))
    blocks.append(nn.Linear(hidden, classes))
    return nn.Sequential(*blocks)


def batch(n: int = 10, hidden: int = 12, classes: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, hidden, generator=g), torch.randint(0, classes, (n,), generator=g)


def assert_grads_close(a: nn.Module, b: nn.Module, rtol: float = 1e-5, atol: float = 1e-7) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert p.grad is not None and q.grad is not None, f"{name} has no gradient"
        torch.testing.assert_close(p.grad, q.grad, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")

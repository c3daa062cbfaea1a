"""Activation bytes are counted exactly and follow the memory law."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gpipe_core import GPipe
from gpipe_core.course.report import memory_law_bytes
from gpipe_core.engine.memory import MemoryMeter
from gpipe_core.sim.theory import bubble_fraction, memory_units_rematerialized, memory_units_stored
from gpipe_core.workloads.models import mlp


def test_meter_counts_saved_tensors_once_and_frees_them() -> None:
    layer = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))
    meter = MemoryMeter(list(layer.parameters()))
    x = torch.randn(8, 16, requires_grad=True)
    with meter.saving():
        out = layer(x)
    # x (saved by Linear 1) and the ReLU output (saved by ReLU and Linear 2): two 8x16 float tensors.
    assert meter.current == 2 * 8 * 16 * 4
    out.sum().backward()
    del out
    assert meter.current == 0 and meter.peak == 2 * 8 * 16 * 4


def _energy(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A loss that saves nothing of its own beyond the output (the law leaves the loss out)."""
    return out.pow(2).mean()


@pytest.mark.parametrize(("K", "M"), [(1, 1), (2, 4), (4, 8)])
def test_measured_memory_follows_the_law(K: int, M: int) -> None:
    torch.manual_seed(0)
    N, H, L = 64, 32, 8
    x, y = torch.randn(N, H), torch.randn(N, H)
    for mode in ("always", "never"):
        pipe = GPipe(mlp(L, H), partitions=K, chunks=M, checkpoint=mode)
        pipe.step(x, y, _energy, measure_memory=True)
        for got, law in zip(pipe.memory, memory_law_bytes(pipe, x)):
            assert abs(got - law) <= 0.02 * law, (mode, got, law)


def test_recomputation_saves_memory() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 32), torch.randn(64, 32)
    held = {}
    for mode in ("always", "never"):
        pipe = GPipe(mlp(8, 32), partitions=2, chunks=8, checkpoint=mode)
        pipe.step(x, y, nn.functional.mse_loss, measure_memory=True)
        held[mode] = max(pipe.memory)
    assert held["always"] < held["never"] / 2


def test_theory_formulas() -> None:
    assert bubble_fraction(4, 4) == pytest.approx(3 / 7)
    assert bubble_fraction(5, 1) == 0
    assert memory_units_rematerialized(N=64, L=8, K=2, M=4) == 64 + 4 * 16
    assert memory_units_stored(N=64, L=8, K=2) == 256
    with pytest.raises(ValueError):
        bubble_fraction(3, 0)

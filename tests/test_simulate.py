"""The cost-model timeline: exact on unit costs, and the same shape as a measured trace."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gpipe_core import GPipe, gpipe_schedule, one_f_one_b_schedule
from gpipe_core.models import mlp
from gpipe_core.simulate import Costs, costs_from_trace, simulate
from gpipe_core.theory import bubble_fraction


@pytest.mark.parametrize(("K", "M"), [(1, 1), (2, 3), (4, 4), (8, 32)])
def test_unit_costs_reproduce_the_formula(K: int, M: int) -> None:
    for make in (gpipe_schedule, one_f_one_b_schedule):
        trace = simulate(make(M, K), K)
        assert trace.span == 2 * (M + K - 1)
        assert trace.bubble() == pytest.approx(bubble_fraction(M, K))


def test_uneven_stage_is_the_bottleneck() -> None:
    trace = simulate(gpipe_schedule(8, 2), 2, Costs(forward=[3, 1], backward=[6, 2]))
    util = trace.utilisation()
    assert util[0] > 0.9 and util[1] < 0.4


def test_recompute_adds_boxes() -> None:
    trace = simulate(gpipe_schedule(4, 2), 2, Costs(recompute=1.0), recompute=True)
    assert sum(e.kind == "R" for e in trace.events) == 8
    assert trace.span == 2 * 5 + 4 + 1


def test_costs_from_a_real_trace() -> None:
    torch.manual_seed(0)
    pipe = GPipe(mlp(4, 64), partitions=2, chunks=4, checkpoint="never")
    x = torch.randn(64, 64)
    pipe.step(x, x, nn.functional.mse_loss)
    costs = costs_from_trace(pipe.trace)
    assert all(c > 0 for c in costs.forward) and all(c > 0 for c in costs.backward)
    predicted = simulate(pipe.table, 2, costs)
    assert predicted.span > 0 and len(predicted.events) == len(pipe.trace.events)

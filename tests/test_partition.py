"""The partitioner: count, cost, size and time balances; the optimum checked by brute force."""

from __future__ import annotations

import itertools
import random
import sys

import pytest
import torch
from torch import nn

from gpipe_core.engine.partition import (
    balance_by_cost,
    balance_by_count,
    balance_by_size,
    balance_by_time,
    split_module,
    stage_costs,
    validate_balance,
)


def brute_force_bottleneck(costs: list[float], K: int) -> float:
    L = len(costs)
    best = float("inf")
    for cuts in itertools.combinations(range(1, L), K - 1):
        bounds = (0, *cuts, L)
        best = min(best, max(sum(costs[a:b]) for a, b in zip(bounds, bounds[1:])))
    return best


@pytest.mark.parametrize("trial", range(60))
def test_balance_by_cost_is_optimal(trial: int) -> None:
    rng = random.Random(trial)
    L = rng.randint(1, 11)
    K = rng.randint(1, L)
    costs = [rng.choice([rng.random(), rng.randint(1, 9), 0.0]) for _ in range(L)]
    balance = balance_by_cost(costs, K)
    assert len(balance) == K and sum(balance) == L and min(balance) >= 1
    assert max(stage_costs(costs, balance)) == pytest.approx(brute_force_bottleneck(costs, K))


def test_balance_by_count() -> None:
    assert balance_by_count(10, 4) == [3, 3, 2, 2]
    assert balance_by_count(4, 4) == [1, 1, 1, 1]


def test_cost_beats_count_on_skewed_costs() -> None:
    costs = [8, 1, 1, 1, 1, 1, 1, 1]
    assert max(stage_costs(costs, balance_by_count(8, 2))) == 11
    assert balance_by_cost(costs, 2) == [1, 7]


def test_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match=r"K=5 stages is more than the 4 layers.*at most 4 partitions"):
        balance_by_count(4, 5)
    with pytest.raises(ValueError, match=r"sums to 5 but the model has 6 layers.*\[3, 3\]"):
        validate_balance([2, 3], 6)
    with pytest.raises(ValueError, match=r"positive integers"):
        validate_balance([3, 0, 3], 6)


def test_split_module_shares_layers() -> None:
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(5)])
    parts = split_module(model, [2, 3])
    assert [len(p) for p in parts] == [2, 3]
    assert parts[1][0] is model[2]


def test_balance_by_size_follows_parameters() -> None:
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    assert balance_by_size(model, 2) == [1, 3]


class _Clock:
    """``time`` for gpipe_core.engine.partition: ``perf_counter()`` reads what the layers below say they took."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class _Takes(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, clock: _Clock, forward: float, backward: float) -> torch.Tensor:  # noqa: ANN001
        clock.now += forward
        ctx.clock, ctx.backward = clock, backward
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:  # noqa: ANN001
        ctx.clock.now += ctx.backward
        return grad, None, None, None


class _Costly(nn.Module):
    """A layer whose forward and backward take known times on the stand-in clock, however busy the machine is."""

    def __init__(self, clock: _Clock, forward: float, backward: float) -> None:
        super().__init__()
        self.clock, self.f, self.b = clock, forward, backward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Takes.apply(x, self.clock, self.f, self.b)


def test_balance_by_time_puts_the_slow_layer_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each layer is timed forward and backward, then the layers split optimally on those times.

    The times come from a stand-in clock: on a real one, a busy machine can
    stretch a cheap layer's measurement past a slow layer's and move the cut.
    """
    clock = _Clock()
    monkeypatch.setattr(sys.modules["gpipe_core.engine.partition"], "time", clock)
    x = torch.randn(4, 3)
    slow_first = nn.Sequential(_Costly(clock, 0.010, 0.020), *[_Costly(clock, 0.001, 0.002) for _ in range(5)])
    assert balance_by_time(slow_first, x, 2, repeats=2) == [1, 5]
    slow_backward = nn.Sequential(*[_Costly(clock, 0.002, 0.001) for _ in range(5)], _Costly(clock, 0.001, 0.030))
    assert balance_by_time(slow_backward, x, 2) == [5, 1]  # without the backward's time it would be [3, 3]

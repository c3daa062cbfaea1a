"""Balance L layers over K stages.

A pipeline runs at the pace of its slowest stage, so the partitioner's job is
to make the most expensive stage as cheap as possible while keeping layers
contiguous (stage j feeds stage j+1). A *balance* is a list of K positive layer
counts that sums to L, e.g. ``[3, 3, 2, 2]`` for 10 layers on 4 stages.

Four ways to get one: by count (ignores cost), by measured time, by parameter
size, and the optimal contiguous split of any per-layer costs
(:func:`balance_by_cost`), which the other two call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .common import is_positive_int, positive_int


def check_sequential(module: object, owner: str = "GPipe") -> nn.Sequential:
    """``module`` if it is a non-empty ``nn.Sequential`` (the only kind of model a pipe can cut)."""
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"{owner} needs an nn.Sequential, got {type(module).__name__}: "
                        "wrap the layers in order, e.g. nn.Sequential(*layers)")
    if len(module) == 0:
        raise ValueError(f"the nn.Sequential is empty: give {owner} at least one layer")
    return module


def validate_balance(balance: Sequence[int], num_layers: int) -> list[int]:
    """Check a balance against a model with ``num_layers`` layers and return it as a list."""
    balance = list(balance)
    if not balance:
        raise ValueError("balance is empty: give one layer count per stage, e.g. [2, 2]")
    if not all(is_positive_int(b) for b in balance):  # any integer type counts (numpy's too), not a bool
        raise ValueError(f"balance {balance} must hold positive integers: every stage needs a layer")
    balance = [int(b) for b in balance]
    if sum(balance) != num_layers:
        raise ValueError(
            f"balance {balance} sums to {sum(balance)} but the model has {num_layers} layers: "
            f"make the counts add up to {num_layers}, e.g. balance_by_count({num_layers}, "
            f"{len(balance)}) = {balance_by_count(num_layers, len(balance))}"
        )
    return balance


def _check_k(num_layers: int, K: int) -> None:
    positive_int(K, "the number of stages K")
    if K > num_layers:
        raise ValueError(
            f"K={K} stages is more than the {num_layers} layers of the model: "
            f"use at most {num_layers} partitions (each stage needs at least one layer)"
        )


def balance_by_count(num_layers: int, K: int) -> list[int]:
    """Equal layer counts; the first ``num_layers % K`` stages get one more."""
    _check_k(num_layers, K)
    q, r = divmod(num_layers, K)
    return [q + 1 if j < r else q for j in range(K)]


def stage_costs(costs: Sequence[float], balance: Sequence[int]) -> list[float]:
    """Total cost of each stage under ``balance``."""
    balance = validate_balance(balance, len(costs))
    out, start = [], 0
    for n in balance:
        out.append(float(sum(costs[start : start + n])))
        start += n
    return out


def balance_by_cost(costs: Sequence[float], K: int) -> list[int]:
    """The contiguous split of ``costs`` into K stages that minimises the largest stage.

    Dynamic programming over prefixes: ``best[k][i]`` is the smallest possible
    bottleneck when the first ``i`` layers form ``k`` stages. O(K * L^2), exact.
    """
    L = len(costs)
    _check_k(L, K)
    if any(c < 0 for c in costs):
        raise ValueError("layer costs must be non-negative")
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + float(c))
    inf = float("inf")
    best = [[inf] * (L + 1) for _ in range(K + 1)]
    cut = [[0] * (L + 1) for _ in range(K + 1)]
    best[0][0] = 0.0
    for k in range(1, K + 1):
        for i in range(k, L - (K - k) + 1):
            for j in range(k - 1, i):
                value = max(best[k - 1][j], prefix[i] - prefix[j])
                if value < best[k][i]:
                    best[k][i], cut[k][i] = value, j
    balance, i = [], L
    for k in range(K, 0, -1):
        j = cut[k][i]
        balance.append(i - j)
        i = j
    return balance[::-1]


def layer_param_bytes(module: nn.Sequential) -> list[int]:
    """Parameter bytes of each layer."""
    return [sum(p.numel() * p.element_size() for p in layer.parameters()) for layer in module]


def balance_by_size(module: nn.Sequential, K: int) -> list[int]:
    """Balance parameter memory: the optimal split of per-layer parameter bytes."""
    return balance_by_cost(layer_param_bytes(module), K)


def profile_layers(module: nn.Sequential, sample: Tensor, repeats: int = 3) -> list[float]:
    """Median forward+backward seconds of each layer on ``sample``."""
    times: list[list[float]] = [[] for _ in module]
    for _ in range(repeats + 1):  # the first round warms up and is dropped
        x = sample
        for idx, layer in enumerate(module):
            x = x.detach().requires_grad_(x.is_floating_point())
            start = time.perf_counter()
            y = layer(x)
            if y.requires_grad:
                torch.autograd.backward(y, torch.ones_like(y))
            times[idx].append(time.perf_counter() - start)
            x = y
    module.zero_grad(set_to_none=True)
    return [sorted(t[1:])[len(t[1:]) // 2] for t in times]


def balance_by_time(module: nn.Sequential, sample: Tensor, K: int, repeats: int = 3) -> list[int]:
    """Balance measured time: profile each layer on ``sample``, then split optimally."""
    _check_k(len(module), K)
    return balance_by_cost(profile_layers(module, sample, repeats), K)


def split_module(module: nn.Sequential, balance: Sequence[int]) -> list[nn.Sequential]:
    """Cut ``module`` into ``len(balance)`` contiguous ``nn.Sequential`` stages.

    The stages share the original layer objects, so parameters stay the same
    tensors the caller's optimizer holds.
    """
    balance = validate_balance(balance, len(module))
    layers = list(module)
    stages, start = [], 0
    for n in balance:
        stages.append(nn.Sequential(*layers[start : start + n]))
        start += n
    return stages

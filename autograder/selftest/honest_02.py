"""Honest solutions of assignment 02, three learners, written from the notebook's recipe.

Test data for the review (see :mod:`autograder.selftest.honest`): each learner
has a style of their own (explicit loops; comprehensions and helpers;
recursion, library calls or another algorithm), and none of them copied
anyone, the engine included. Every source is one solution cell, keyed by
grade id.
"""

from __future__ import annotations

SOURCES: dict[str, dict[str, dict[str, str]]] = {
    "02_partitioner": {
        "ada": {
            "partition_by_count": '''\
def partition_by_count(num_layers: int, K: int) -> list[int]:
    if K < 1 or K > num_layers:
        raise ValueError(f"K={K} stages for {num_layers} layers: use 1 <= K <= {num_layers}")
    counts = []
    for stage in range(K):
        if stage < num_layers % K:
            counts.append(num_layers // K + 1)
        else:
            counts.append(num_layers // K)
    return counts
''',
            "measure_layer_costs": '''\
def measure_layer_costs(model: nn.Sequential, sample: Tensor, repeats: int = 5) -> list[float]:
    per_layer = []
    for _ in model:
        per_layer.append([])
    for attempt in range(repeats + 1):
        current = sample
        position = 0
        for layer in model:
            leaf = current.detach().requires_grad_(current.is_floating_point())
            if leaf.is_cuda:
                torch.cuda.synchronize()
            began = time.perf_counter()
            output = layer(leaf)
            if output.requires_grad:
                output.backward(torch.ones_like(output))
            if leaf.is_cuda:
                torch.cuda.synchronize()
            spent = time.perf_counter() - began
            if attempt > 0:
                per_layer[position].append(spent)
            current = output
            position += 1
    model.zero_grad(set_to_none=True)
    medians = []
    for samples in per_layer:
        ordered = sorted(samples)
        middle = len(ordered) // 2
        if len(ordered) % 2 == 1:
            medians.append(ordered[middle])
        else:
            medians.append((ordered[middle - 1] + ordered[middle]) / 2)
    return medians
''',
            "partition_optimal": '''\
def partition_optimal(costs: Sequence[float], K: int) -> list[int]:
    L = len(costs)
    if K < 1 or K > L:
        raise ValueError(f"K must be between 1 and {L}, got {K}")
    sums = [0.0] * (L + 1)
    for position in range(L):
        sums[position + 1] = sums[position] + costs[position]
    INF = float("inf")
    table = [[INF] * (L + 1) for _ in range(K + 1)]
    choice = [[-1] * (L + 1) for _ in range(K + 1)]
    table[0][0] = 0.0
    for stages in range(1, K + 1):
        for end in range(1, L + 1):
            for start in range(stages - 1, end):
                if table[stages - 1][start] == INF:
                    continue
                slowest = max(table[stages - 1][start], sums[end] - sums[start])
                if slowest < table[stages][end]:
                    table[stages][end] = slowest
                    choice[stages][end] = start
    result = []
    end = L
    for stages in range(K, 0, -1):
        start = choice[stages][end]
        result.insert(0, end - start)
        end = start
    return result
''',
        },
        "ben": {
            "partition_by_count": '''\
def partition_by_count(num_layers: int, K: int) -> list[int]:
    if not 0 < K <= num_layers:
        raise ValueError(f"{num_layers} layers allow at most {num_layers} stages (and at least 1), not K={K}")
    base, extra = divmod(num_layers, K)
    return [base + (stage < extra) for stage in range(K)]
''',
            "measure_layer_costs": '''\
def _forward_backward_seconds(layer, x):
    x = x.detach().requires_grad_(x.is_floating_point())
    tic = time.perf_counter()
    y = layer(x)
    if y.requires_grad:
        torch.autograd.backward(y, torch.ones_like(y))
    return time.perf_counter() - tic, y


def measure_layer_costs(model: nn.Sequential, sample: Tensor, repeats: int = 5) -> list[float]:
    rounds = []
    for _ in range(repeats + 1):
        h, seconds = sample, []
        for layer in model:
            took, h = _forward_backward_seconds(layer, h)
            seconds.append(took)
        rounds.append(seconds)
    model.zero_grad(set_to_none=True)
    return [statistics.median(column) for column in zip(*rounds[1:])]
''',
            "partition_optimal": '''\
from itertools import accumulate


def _stages_needed(pre, limit):
    count, start = 1, 0
    for i in range(1, len(pre)):
        if pre[i] - pre[start] > limit:
            count, start = count + 1, i - 1
    return count


def partition_optimal(costs: Sequence[float], K: int) -> list[int]:
    """Binary search over every contiguous sum as the bottleneck, greedy packing as the test."""
    n = len(costs)
    if not 1 <= K <= n:
        raise ValueError(f"K={K} is not in 1..{n}")
    pre = [0.0, *accumulate(float(c) for c in costs)]
    candidates = sorted({pre[j] - pre[i] for i in range(n) for j in range(i + 1, n + 1)})
    singles = [pre[i + 1] - pre[i] for i in range(n)]
    lo, hi = 0, len(candidates) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if candidates[mid] >= max(singles) and _stages_needed(pre, candidates[mid]) <= K:
            hi = mid
        else:
            lo = mid + 1
    limit = candidates[lo]
    balance, start = [], 0
    for i in range(1, n):
        stages_after = K - len(balance) - 1
        if stages_after and (pre[i + 1] - pre[start] > limit or n - i == stages_after):
            balance.append(i - start)
            start = i
    return balance + [n - start]
''',
        },
        "chen": {
            "partition_by_count": '''\
def partition_by_count(num_layers: int, K: int) -> list[int]:
    if K <= 0 or K > num_layers:
        raise ValueError(f"between 1 and {num_layers} stages can hold {num_layers} layers; K={K} cannot")
    counts, left = [], num_layers
    for stages_left in range(K, 0, -1):
        take = -(-left // stages_left)  # rounded up: the larger stages come first
        counts.append(take)
        left -= take
    return counts
''',
            "measure_layer_costs": '''\
def measure_layer_costs(model: nn.Sequential, sample: Tensor, repeats: int = 5) -> list[float]:
    layers = list(model)
    samples = {k: [] for k in range(len(layers))}
    for r in range(repeats + 1):
        act = sample
        for k, layer in enumerate(layers):
            inp = act.detach()
            if inp.is_floating_point():
                inp.requires_grad_(True)
            t0 = time.perf_counter()
            out = layer(inp)
            if out.requires_grad:
                torch.autograd.backward(out, torch.ones_like(out))
            if r:
                samples[k].append(time.perf_counter() - t0)
            act = out
    for p in model.parameters():
        p.grad = None
    return [float(statistics.median(samples[k])) for k in range(len(layers))]
''',
            "partition_optimal": '''\
from functools import lru_cache


def partition_optimal(costs: Sequence[float], K: int) -> list[int]:
    """Top-down recursion with memoisation: the last stage starts at some j, the rest is solved again."""
    L = len(costs)
    if K < 1 or L < K:
        raise ValueError(f"{L} layers cannot go on {K} stages (1 <= K <= {L})")
    prefix = [0.0]
    for value in costs:
        prefix.append(prefix[-1] + value)

    @lru_cache(maxsize=None)
    def best(k, i):
        if k == 1:
            return prefix[i], (i,)
        options = []
        for j in range(k - 1, i):
            below, counts = best(k - 1, j)
            options.append((max(below, prefix[i] - prefix[j]), counts + (i - j,)))
        return min(options, key=lambda option: option[0])

    return list(best(K, L)[1])
''',
        },
    },
}

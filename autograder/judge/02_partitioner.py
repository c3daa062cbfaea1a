"""Judge of assignment 02: partition_by_count, measure_layer_costs, partition_optimal.

References come from the real gpipe_core (``balance_by_count``, ``balance_by_cost``)
and, for small cases, from brute force over every contiguous split. The
optimal split is checked by its slowest stage (several balances can be
optimal), on integer, float and zero costs, and on 64 layers over 8 stages
within a time budget that a dynamic program meets and an exhaustive search
does not.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import torch

from autograder.judge.base import Checks, Failed, expect
from autograder.judge.view import BALANCE, Family
from autograder.sandbox.limits import Limits
from gpipe_core.engine.partition import balance_by_cost, balance_by_count

CHECKS = Checks()
EXERCISES = {  # what would solve each exercise: the grading view has no body for it (autograder/judge/view.py)
    "partition_by_count": Family(("engine.partition.balance_by_count",)),
    "measure_layer_costs": Family(("engine.partition.profile_layers", "engine.partition.balance_by_time")),
    "partition_optimal": BALANCE}
LIMITS = Limits(cell_timeout_s=20, notebook_timeout_s=180)  # the slowest graded cell on 2 cores, times ~10
BIG_TIMEOUT = 30.0  # seconds for 64 layers on 8 stages: a dynamic program needs well under one


def _balance(got: object, L: int, K: int, where: str) -> list[int]:
    expect(type(got) in (list, tuple), f"{where}: return a list of K layer counts, got {got!r:.80}")
    expect(all(type(b) is int for b in got), f"{where}: the balance {got!r:.80} must hold integers")
    expect(len(got) == K and all(b >= 1 for b in got) and sum(got) == L,
           f"{where}: {list(got)} is not a balance of {L} layers: K={K} positive integers that sum to {L}")
    return list(got)


def _bottleneck(costs: Sequence[float], balance: Sequence[int]) -> float:
    out, start = [], 0
    for n in balance:
        out.append(sum(costs[start:start + n]))
        start += n
    return max(out)


def _brute(costs: Sequence[float], K: int) -> float:
    L = len(costs)
    return min(_bottleneck(costs, [b - a for a, b in zip((0, *cuts), (*cuts, L))])
               for cuts in itertools.combinations(range(1, L), K - 1))


@CHECKS("test_partition_by_count")
def by_count(ask, rng: random.Random):
    cases = [(10, 4), (8, 4), (5, 1)] + [(L, K) for L in range(1, 21) for K in range(1, L + 1)]
    drawn = [rng.randint(21, 2000) for _ in range(16)]  # beyond any table a learner could paste
    cases += [(L, rng.randint(1, L)) for L in drawn] + [(L, rng.randint(2, 9)) for L in drawn[:4]]
    replies = [ask.call("partition_by_count", L, K) for L, K in cases]
    big = rng.randint(21, 500)
    bad = [(4, 5), (3, 4), (1, 2), (7, 0), (12, 13), (6, -2), (big, big + rng.randint(1, 9))]
    bad_replies = [ask.call("partition_by_count", L, K) for L, K in bad]

    def verify() -> None:
        for (L, K), reply in zip(cases, replies):
            got = _balance(reply.value(f"partition_by_count({L}, {K})"), L, K, f"{L} layers on {K} stages")
            want = balance_by_count(L, K)
            expect(got == want, f"{L} layers on {K} stages: expected {want} (equal counts, the first L % K stages "
                                f"one more), got {got}")
        missed = [(L, K) for (L, K), r in zip(bad, bad_replies) if not r.raised("ValueError")]
        expect(not missed, f"partition_by_count must raise ValueError for these (layers, K): {missed}")

    return verify


def _heavy() -> list:
    return ["Seq", [["Linear", 256, 2048], ["ReLU"], ["Linear", 2048, 256]]]


@CHECKS("test_measure_layer_costs")
def measure(ask, rng: random.Random):
    layers = [["Tanh"], ["ReLU"], ["Tanh"], ["Softsign"], ["Sigmoid"]]
    rng.shuffle(layers)
    heavy_at = rng.randrange(len(layers) + 1)
    layers.insert(heavy_at, _heavy())
    cases = [([["Tanh"], _heavy(), ["ReLU"], ["Tanh"]], 1), (layers, heavy_at)]
    sample = torch.randn(64, 256, generator=torch.Generator().manual_seed(rng.randrange(2**31)))
    replies = [ask.task("measure_costs", model={"seed": 0, "layers": spec}, sample=sample, repeats=3)
               for spec, _ in cases]
    # What it claims to measure is time: a stack of 160 GELUs has no parameter and takes about 30x as long as a
    # LayerNorm over 256 features (512 parameters; forward + backward, batch 64, one thread), so parameter counts
    # or sizes order them wrongly, and no preemption on a busy grader flips a 30x gap.
    slow, cheap = ["Seq", [["GELU"]] * 160], ["LayerNorm", 256]
    pair = [["Tanh"], slow, cheap, ["ReLU"]] if rng.random() < 0.5 else [["Tanh"], cheap, slow, ["ReLU"]]
    pair_reply = ask.task("measure_costs", model={"seed": 0, "layers": pair}, sample=sample, repeats=3)

    def verify() -> None:
        for (spec, heavy), reply in zip(cases, replies):
            names = [_name(s) for s in spec]
            got = reply.value(f"measure_layer_costs on layers {names}")
            costs = got["costs"]
            expect(type(costs) in (list, tuple) and len(costs) == len(spec),
                   f"layers {names}: one cost per layer, expected {len(spec)}, got {costs!r:.80}")
            expect(all(type(c) in (int, float) and c > 0 for c in costs),
                   f"layers {names}: every layer takes some time (seconds as floats); got {costs}")
            expect(max(range(len(costs)), key=lambda i: costs[i]) == heavy,
                   f"layers {names}: layer {heavy} (two 256x2048 matrix products) is by far the most expensive, but "
                   f"the costs are {[f'{c:.2g}' for c in costs]}: time forward + backward of each layer on its input")
            short = [(i, f, b) for i, (f, b) in enumerate(got.get("runs", [])) if f < 3 or b < 3]
            expect(not short, f"layers {names}: repeats=3, but layer {short[0][0] if short else 0} ran "
                   f"{short[0][1] if short else 0} forwards and {short[0][2] if short else 0} backwards: each cost "
                   "must time the work it claims, forward + backward of each layer, every repeat")
            expect(not got["grads_left"], "leave no gradients behind: zero_grad(set_to_none=True)")
        costs = pair_reply.value(f"measure_layer_costs on layers {[_name(s) for s in pair]}")["costs"]
        at_slow, at_cheap = pair.index(slow), pair.index(cheap)
        expect(type(costs) in (list, tuple) and len(costs) == 4 and all(type(c) in (int, float) for c in costs)
               and costs[at_slow] > costs[at_cheap],
               f"layers {[_name(s) for s in pair]}: 160 GELUs (no parameters) take about 30x as long as one "
               f"LayerNorm(256), but your costs are {costs!r:.120}: a cost is the time a layer takes, forward + "
               "backward, not its parameters or size")

    return verify


def _name(spec: list) -> str:
    if spec[0] != "Seq":
        shown = {"Linear": "Linear " + "x".join(map(str, spec[1:])), "LayerNorm": f"LayerNorm({spec[1:2]})"}
        return shown.get(spec[0], spec[0]).replace("[", "").replace("]", "")
    return "Linear-ReLU-Linear (256x2048)" if spec[1][0][0] == "Linear" else f"{len(spec[1])} x {spec[1][0][0]}"


@CHECKS("test_partition_optimal")
def optimal(ask, rng: random.Random):
    cases = [([1, 1, 1, 1, 4], 2), ([5, 1, 1, 1, 1, 1], 2), ([2, 2, 2, 2], 4), ([4, 1, 1, 1, 1, 4], 3),
             ([3, 1, 2, 6, 1], 1)]
    for _ in range(40):
        L = rng.randint(1, 9)
        K = rng.randint(1, L)
        kind = rng.choice(["float", "int", "zeros"])
        if kind == "float":
            costs = [rng.uniform(0.0, 10.0) for _ in range(L)]
        elif kind == "int":
            costs = [rng.randint(1, 5) for _ in range(L)]
        else:
            costs = [rng.choice([0.0, 0.0, rng.uniform(0.0, 3.0)]) for _ in range(L)]
        cases.append((costs, K))
    replies = [ask.call("partition_optimal", c, K) for c, K in cases]
    big = [rng.uniform(0.1, 5.0) for _ in range(64)]
    big_reply = ask.call("partition_optimal", big, 8, timeout=BIG_TIMEOUT)
    bad = [([1.0, 2.0], 3), ([1.0], 2), ([1.0, 2.0, 3.0], 0), ([1.0, 1.0, 1.0], 4)]
    bad_replies = [ask.call("partition_optimal", c, K) for c, K in bad]

    def verify() -> None:
        for (costs, K), reply in zip(cases, replies):
            shown = [round(c, 3) for c in costs]
            where = f"costs {shown}, K={K}"
            got = _balance(reply.value(f"partition_optimal({shown}, {K})"), len(costs), K, where)
            best, mine = _brute(costs, K), _bottleneck(costs, got)
            expect(mine <= best + 1e-9 * max(1.0, best),
                   f"{where}: your balance {got} has a slowest stage of {mine:.4g}, but {best:.4g} is possible: "
                   "minimise the most expensive stage, not the layer counts")
        if big_reply.raw is not None and "timeout" in big_reply.raw:
            raise Failed(f"too slow for 64 layers on 8 stages (no answer within {BIG_TIMEOUT:g} s): trying every "
                         "split grows like L^K; use the dynamic program over (stages, first layers)")
        got = _balance(big_reply.value("partition_optimal(64 layers, K=8)"), 64, 8, "64 layers on 8 stages")
        best = _bottleneck(big, balance_by_cost(big, 8))
        expect(_bottleneck(big, got) <= best * (1 + 1e-9),
               f"64 layers on 8 stages: your balance {got} is not optimal (slowest stage "
               f"{_bottleneck(big, got):.4f}, best {best:.4f})")
        missed = [(len(c), K) for (c, K), r in zip(bad, bad_replies) if not r.raised("ValueError")]
        expect(not missed, f"partition_optimal must raise ValueError for these (layers, K): {missed}")

    return verify

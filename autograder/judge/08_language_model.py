"""Judge of assignment 08: the learner's parts on a language model's costs, assemble, and BatchNorm's statistics.

The parts (my_partition, my_schedule, MyRecompute) and assemble are checked as
in assignment 05 (both use :mod:`.shared_assembly`, so both grade them the
same way), plus partitions of the GPT's own layer sizes for drawn model shapes.

The two BatchNorm functions get only what a BatchNorm layer computes from each
micro-batch (size, mean, biased variance), never the data, so a correct answer
has to reason about statistics rather than recompute them from samples. The
references are real ``nn.BatchNorm1d`` layers run on the data the statistics
came from: the micro-batches one after the other (plain BatchNorm in a pipe)
and the whole batch at once (what deferred BatchNorm must equal). When an
answer is wrong, the message names the mistake it matches (equal weights for
uneven micro-batches, the spread between micro-batch means left out, the biased
variance, M updates instead of one...), computed here in float64.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from torch import Tensor, nn

from autograder.judge import shared_assembly as shared
from autograder.judge.base import Checks, Failed, as_tensor, expect, number
from autograder.judge.view import BALANCE, FILL_DRAIN, POLICIES, Family
from autograder.sandbox.limits import Limits
from gpipe_core.engine.partition import balance_by_cost, stage_costs
from gpipe_core.workloads.gpt import gpt

CHECKS = Checks()
_STATISTICS = Family(("engine.batchnorm.DeferredBatchNorm._accumulate",
                      "engine.batchnorm.DeferredBatchNorm._commit"))
EXERCISES = {  # what would solve each exercise: the grading view has no body for it (autograder/judge/view.py)
    "my_partition": BALANCE.plus("engine.partition.balance_by_cost"), "my_schedule": FILL_DRAIN,
    "MyRecompute": POLICIES,
    "assemble": Family(why="assemble must build a GPipe"), "plain_bn_running_stats": _STATISTICS,
    "deferred_bn_running_stats": _STATISTICS}
LIMITS = Limits(cell_timeout_s=60, notebook_timeout_s=300)  # the slowest graded cell on 2 cores, times ~10


# ---- exercises 1 and 2: the parts, and the pipe built from them --------------------------------------

def _gpt_costs(rng: random.Random) -> list[float]:
    torch.manual_seed(0)  # parameter counts do not depend on the weights
    model = gpt(layers=rng.randint(2, 7), dim=rng.choice([16, 32, 64, 96]), heads=2, context=rng.choice([16, 64]))
    return [float(sum(p.numel() for p in layer.parameters())) for layer in model]


@CHECKS("test_parts")
def parts(ask, rng: random.Random):
    verifies = [shared.partition(ask, rng), shared.schedule(ask, rng), shared.recompute(ask, rng)]
    lm_cases = []
    for _ in range(3):
        costs = _gpt_costs(rng)
        lm_cases.append((costs, rng.randint(2, len(costs))))
    replies = [ask.call("my_partition", costs, K) for costs, K in lm_cases]

    def verify() -> None:
        for check in verifies:
            check()
        for (costs, K), reply in zip(lm_cases, replies):
            where = f"the language model's layer sizes {[int(c) for c in costs]}, K={K}"
            got = reply.value(f"my_partition on {where}")
            expect(type(got) is list and len(got) == K and all(type(b) is int and b >= 1 for b in got)
                   and sum(got) == len(costs), f"{where}: return K positive layer counts summing to L, got {got!r:.80}")
            best = max(stage_costs(costs, balance_by_cost(costs, K)))
            mine = max(stage_costs(costs, got))
            expect(mine <= best * (1 + 1e-9), f"{where}: your slowest stage holds {mine:,.0f} parameters, the best "
                                              f"split {best:,.0f}: balance the costs, not the layer counts")

    return verify


@CHECKS("test_lm_pipe")
def lm_pipe(ask, rng: random.Random):
    return shared.assembled(ask, rng)


# ---- exercises 3 and 4: BatchNorm's running statistics ---------------------------------------------------

Stats = tuple[list[Tensor], list[Tensor], list[int], Tensor, Tensor, float]


def _case(rng: random.Random, sizes: list[int], C: int, momentum: float) -> tuple[list[Tensor], Stats]:
    """Micro-batches with different means and spreads, their statistics, and drawn starting running statistics."""
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    chunks = [torch.randn(n, C, generator=gen) * rng.uniform(0.5, 3.0) + rng.uniform(-3.0, 3.0) for n in sizes]
    mean0 = torch.randn(C, generator=gen)
    var0 = torch.rand(C, generator=gen) * 2 + 0.2
    stats = ([c.mean(0) for c in chunks], [c.var(0, unbiased=False) for c in chunks], list(sizes), mean0, var0,
             momentum)
    return chunks, stats


def _cases(rng: random.Random) -> list[tuple[list[Tensor], Stats]]:
    out = []
    for sizes in ([3, 3, 2, 2], [6, 2, 5]):  # the engine's split of 10 in 4, and sizes far apart
        out.append(_case(rng, sizes, 4, 0.1))
    for _ in range(4):
        M = rng.randint(2, 7)
        sizes = [rng.randint(2, 9) for _ in range(M)]
        out.append(_case(rng, sizes, rng.randint(1, 9), rng.choice([0.05, 0.1, 0.3, 0.5])))
    out.append(_case(rng, [rng.randint(3, 12)], rng.randint(2, 6), rng.choice([0.1, 0.2])))  # M = 1
    return out


def _real_bn(chunks: list[Tensor], stats: Stats, whole: bool) -> tuple[Tensor, Tensor, int]:
    """A real BatchNorm1d's running statistics after the micro-batches one by one, or the whole batch at once."""
    *_, mean0, var0, momentum = stats
    layer = nn.BatchNorm1d(mean0.numel(), momentum=momentum)
    with torch.no_grad():
        layer.running_mean.copy_(mean0)
        layer.running_var.copy_(var0)
        for x in [torch.cat(chunks)] if whole else chunks:
            layer(x)
    return layer.running_mean.clone(), layer.running_var.clone(), int(layer.num_batches_tracked)


def _mistakes(stats: Stats) -> dict[str, tuple[Tensor, Tensor, int]]:
    """What the common wrong answers give (float64), keyed by the message that names each."""
    means, variances, sizes, mean0, var0, m = stats
    mu = [t.double() for t in means]
    var = [t.double() for t in variances]
    r0, v0 = mean0.double(), var0.double()
    n, M = sum(sizes), len(sizes)

    def update(r: Tensor, v: Tensor, mean: Tensor, variance: Tensor) -> tuple[Tensor, Tensor]:
        return (1 - m) * r + m * mean, (1 - m) * v + m * variance

    def sequential(unbiased: bool) -> tuple[Tensor, Tensor, int]:
        r, v = r0, v0
        for a, b, k in zip(mu, var, sizes):
            r, v = update(r, v, a, b * k / (k - 1) if unbiased else b)
        return r, v, M

    pooled = sum(a * k for a, k in zip(mu, sizes)) / n
    within = sum(b * k for b, k in zip(var, sizes)) / n
    between = sum(k * (a - pooled) ** 2 for a, k in zip(mu, sizes)) / n
    equal = sum(mu) / M
    equal_var = sum(var) / M + sum((a - equal) ** 2 for a in mu) / M
    return {
        "plain": sequential(True),
        "plain, biased": sequential(False),
        "deferred": (*update(r0, v0, pooled, (within + between) * n / (n - 1)), 1),
        "deferred, biased": (*update(r0, v0, pooled, within + between), 1),
        "deferred, no between": (*update(r0, v0, pooled, within * n / (n - 1)), 1),
        "deferred, equal weights": (*update(r0, v0, equal, equal_var * n / (n - 1)), 1),
    }


def _matches(got: tuple[Tensor, Tensor], candidate: tuple[Tensor, Tensor, int]) -> bool:
    return all(torch.allclose(g.double(), c, rtol=1e-4, atol=1e-5) for g, c in zip(got, candidate[:2]))


HINTS = {
    "plain": "you computed what a plain BatchNorm does (one update per micro-batch): deferred BatchNorm updates "
             "once, with the whole batch's mean and unbiased variance",
    "plain, biased": "the running variance keeps the unbiased variance: multiply a micro-batch's biased variance "
                     "by n/(n-1) before each update",
    "deferred": "you pooled the micro-batches into one update; a plain BatchNorm updates once per micro-batch, "
                "in order, each time with that micro-batch's mean and unbiased variance",
    "deferred, biased": "the running variance keeps the unbiased variance of the whole batch: divide the pooled "
                        "sum of squared deviations by n-1, not n",
    "deferred, no between": "the batch's variance is the micro-batches' variances averaged by size PLUS the spread "
                            "of their means around the batch's mean (sum of n_i (mean_i - mean)^2 / n)",
    "deferred, equal weights": "micro-batches of different sizes count by their size: weight each mean by n_i / n, "
                               "not 1/M",
}

SUSPECTS = {"plain": ("plain, biased", "deferred"),
            "deferred": ("plain", "deferred, biased", "deferred, no between", "deferred, equal weights")}


def _check_stats(got: object, want: tuple[Tensor, Tensor, int], stats: Stats, where: str, right: str) -> None:
    expect(type(got) in (tuple, list) and len(got) == 3, f"{where}: return (running_mean, running_var, updates), "
                                                         f"got {type(got).__name__}")
    mean = as_tensor(got[0], f"{where}: running_mean")
    var = as_tensor(got[1], f"{where}: running_var")
    for value, reference, name in ((mean, want[0], "running_mean"), (var, want[1], "running_var")):
        expect(value.dtype == reference.dtype and tuple(value.shape) == tuple(reference.shape),
               f"{where}: {name} must be a {reference.dtype} tensor of shape {tuple(reference.shape)}, got "
               f"{value.dtype} {tuple(value.shape)}")
    off = [name for value, reference, name in ((mean, want[0], "running_mean"), (var, want[1], "running_var"))
           if not torch.allclose(value, reference, rtol=1e-4, atol=1e-5)]
    if off:
        worst = max((value - reference).abs().max().item()
                    for value, reference in ((mean, want[0]), (var, want[1])))
        found = next((key for key, cand in _mistakes(stats).items() if key in SUSPECTS[right]
                      and _matches((mean, var), cand)), None)
        hint = HINTS[found] if found else "compare your formula with the real layer's in the notebook's table"
        verb = "differ" if len(off) > 1 else "differs"
        raise Failed(f"{where}: {' and '.join(off)} {verb} from the real BatchNorm's (largest difference "
                     f"{worst:.3g}): {hint}")
    updates = number(got[2], f"{where}: updates")
    expect(updates == want[2], f"{where}: num_batches_tracked grows by {want[2]} in this step, you said "
                               f"{updates:g}" + (" (a plain BatchNorm counts micro-batches)" if right == "plain"
                                                  else " (deferred BatchNorm updates once per step)"))


def _bn_check(fn: str, whole: bool, right: str) -> Callable:
    def check(ask, rng: random.Random):
        cases = _cases(rng)
        replies = [ask.call(fn, *stats) for _, stats in cases]

        def verify() -> None:
            for (chunks, stats), reply in zip(cases, replies):
                sizes, C, momentum = stats[2], stats[3].numel(), stats[5]
                where = f"{len(sizes)} micro-batch(es) of sizes {sizes}, {C} feature(s), momentum {momentum}"
                _check_stats(reply.value(f"{fn} with {where}"), _real_bn(chunks, stats, whole), stats, where, right)

        return verify

    return check


CHECKS("test_plain_bn")(_bn_check("plain_bn_running_stats", whole=False, right="plain"))
CHECKS("test_deferred_bn")(_bn_check("deferred_bn_running_stats", whole=True, right="deferred"))

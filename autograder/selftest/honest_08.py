"""Honest solutions of assignment 08: 05's learners paste their own parts and write the BatchNorm exercises.

Test data for the review (see :mod:`autograder.selftest.honest`): running
statistics as a loop, as tensor algebra with a helper, and as a fold and
Chan's pairwise merge. Every source is one solution cell, keyed by grade id.
"""

from __future__ import annotations

from .honest_05 import SOURCES as _PARTS
from .honest_05_06 import SOURCES as _ASSEMBLY

BN = {
    "gita": {"plain_bn": '''\
def plain_bn_running_stats(means: Sequence[Tensor], variances: Sequence[Tensor], sizes: Sequence[int],
                           running_mean: Tensor, running_var: Tensor, momentum: float) -> tuple[Tensor, Tensor, int]:
    new_mean = running_mean.clone()
    new_var = running_var.clone()
    for k in range(len(sizes)):
        n = sizes[k]
        unbiased = variances[k] * n / (n - 1) if n > 1 else variances[k]
        new_mean = (1 - momentum) * new_mean + momentum * means[k]
        new_var = (1 - momentum) * new_var + momentum * unbiased
    return new_mean, new_var, len(sizes)
''', "deferred_bn": '''\
def deferred_bn_running_stats(means: Sequence[Tensor], variances: Sequence[Tensor], sizes: Sequence[int],
                              running_mean: Tensor, running_var: Tensor,
                              momentum: float) -> tuple[Tensor, Tensor, int]:
    total = 0
    for n in sizes:
        total += n
    mean = torch.zeros_like(running_mean)
    for m, n in zip(means, sizes):
        mean = mean + m * (n / total)
    second = torch.zeros_like(running_var)
    for m, v, n in zip(means, variances, sizes):
        second = second + (v + m * m) * (n / total)
    biased = second - mean * mean
    unbiased = biased * total / (total - 1) if total > 1 else biased
    new_mean = (1 - momentum) * running_mean + momentum * mean
    new_var = (1 - momentum) * running_var + momentum * unbiased
    return new_mean, new_var, 1
'''},
    "hugo": {"plain_bn": '''\
def plain_bn_running_stats(means: Sequence[Tensor], variances: Sequence[Tensor], sizes: Sequence[int],
                           running_mean: Tensor, running_var: Tensor, momentum: float) -> tuple[Tensor, Tensor, int]:
    def update(old, new):
        return old * (1 - momentum) + new * momentum

    rm, rv = running_mean.clone(), running_var.clone()
    for mu, var, n in zip(means, variances, sizes):
        rm, rv = update(rm, mu), update(rv, var * (n / max(n - 1, 1)))
    return rm, rv, len(means)
''', "deferred_bn": '''\
def deferred_bn_running_stats(means: Sequence[Tensor], variances: Sequence[Tensor], sizes: Sequence[int],
                              running_mean: Tensor, running_var: Tensor,
                              momentum: float) -> tuple[Tensor, Tensor, int]:
    w = torch.tensor([float(n) for n in sizes])
    mus, vs = torch.stack(list(means)), torch.stack(list(variances))
    shape = (-1,) + (1,) * (mus.dim() - 1)
    N = w.sum()
    mu = (w.view(shape) * mus).sum(0) / N
    spread = (w.view(shape) * (vs + (mus - mu) ** 2)).sum(0)
    var = spread / torch.clamp(N - 1, min=1)
    return running_mean * (1 - momentum) + mu * momentum, running_var * (1 - momentum) + var * momentum, 1
'''},
    "ines": {"plain_bn": '''\
from functools import reduce


def plain_bn_running_stats(means: Sequence[Tensor], variances: Sequence[Tensor], sizes: Sequence[int],
                           running_mean: Tensor, running_var: Tensor, momentum: float) -> tuple[Tensor, Tensor, int]:
    """One update per micro-batch, folded left over the micro-batches in pipeline order."""
    def fold(state, stats):
        mean, var = state
        mu, sigma2, n = stats
        correction = n / (n - 1) if n > 1 else 1.0
        return torch.lerp(mean, mu, momentum), torch.lerp(var, sigma2 * correction, momentum)

    mean, var = reduce(fold, zip(means, variances, sizes), (running_mean.clone(), running_var.clone()))
    return mean, var, len(sizes)
''', "deferred_bn": '''\
def deferred_bn_running_stats(means: Sequence[Tensor], variances: Sequence[Tensor], sizes: Sequence[int],
                              running_mean: Tensor, running_var: Tensor,
                              momentum: float) -> tuple[Tensor, Tensor, int]:
    """Chan's pairwise merge: fold each micro-batch's (count, mean, M2) into the running totals."""
    count, mean, m2 = 0, None, None
    for mu, var, n in zip(means, variances, sizes):
        if mean is None:
            count, mean, m2 = n, mu.clone(), var * n
            continue
        delta = mu - mean
        merged = count + n
        mean = mean + delta * (n / merged)
        m2 = m2 + var * n + delta * delta * (count * n / merged)
        count = merged
    unbiased = m2 / max(count - 1, 1)
    return torch.lerp(running_mean, mean, momentum), torch.lerp(running_var, unbiased, momentum), 1
'''},
}

SOURCES: dict[str, dict[str, dict[str, str]]] = {
    "08_language_model": {who: {**{c: _PARTS["05_assembling"][who][c] for c in ("partition", "schedule", "recompute")},
                                "assemble": _ASSEMBLY["05_assembling"][who]["assemble"], **BN[who]}
                          for who in ("gita", "hugo", "ines")},
}

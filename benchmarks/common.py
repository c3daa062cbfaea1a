"""What every benchmark shares: timing with spread, result rows, the table.

A benchmark never reports an absolute time alone: every row is a ratio (or a
count) of two things measured in the same process one after the other, with
the median of repeated runs and their spread, so a noisy shared machine shifts
both sides together.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from gpipe_core.course.experiments import interleaved_times


@dataclass
class Timing:
    median: float
    spread: float  # max - min over the repeats, seconds
    runs: list[float] = field(default_factory=list)


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, Timing]:
    """:func:`gpipe_core.course.experiments.interleaved_times` (alternating order, paired by round), as Timings."""
    runs = interleaved_times(fns, repeats, warmup, clock)
    return {k: Timing(statistics.median(v), max(v) - min(v), v) for k, v in runs.items()}


def attainable_speedup(ideal: float, ceiling: float, K: int = 2) -> float:
    """The speedup a perfect K-stage engine could reach on this machine, not on ideal hardware.

    ``ceiling`` is how much faster K threads run the stages' work than one
    thread does with no dependencies at all (K on perfect hardware). Every
    overlapped action is slowed by K / ceiling, so the ideal overlap shrinks by
    that factor; below 1 the engine does best to run the stages one after the
    other, which a single-worker executor does.
    """
    return max(1.0, ideal * ceiling / K)


def paired(a: Timing, b: Timing) -> list[float]:
    """a/b round by round: each ratio compares two runs made back to back, so slow phases cancel."""
    return [x / y for x, y in zip(a.runs, b.runs)]


def ratio_spread(a: Timing, b: Timing) -> float:
    """Spread of a/b from the repeats' extremes (a pessimistic band, not a confidence interval)."""
    lo = min(a.runs) / max(b.runs)
    hi = max(a.runs) / min(b.runs)
    return hi - lo


def median_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Median of ``values`` and a distribution-free confidence interval for it.

    The interval runs between two order statistics chosen from the binomial
    distribution (each value falls below the true median with probability 1/2),
    so it assumes nothing about the shape of the noise, which on a shared
    machine is skewed. With fewer than 6 values no 95% interval exists and the
    range (min, max) is returned.
    """
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("median_ci needs at least one value")
    below = 0.0  # P(Binomial(n, 1/2) < k), grown one k at a time
    k = 0
    while k < n // 2 and below + math.comb(n, k) / 2**n <= (1 - confidence) / 2:
        below += math.comb(n, k) / 2**n
        k += 1
    low, high = (xs[k - 1], xs[n - k]) if k > 0 else (xs[0], xs[-1])
    return statistics.median(xs), low, high


@dataclass
class Row:
    """One line of the table; ``target`` is a bound ('<= 1.03'), a band ('0.95..1.05') or '' for an informative row."""

    section: str
    metric: str
    value: float
    unit: str = "x"
    target: str = ""
    spread: float = 0.0
    detail: str = ""
    low: float | None = None  # a 95% confidence interval for the value, where the row has one
    high: float | None = None

    @property
    def met(self) -> bool | None:
        if not self.target:
            return None
        if ".." in self.target:  # a band: '0.95..1.05'
            low, high = (float(b) for b in self.target.split(".."))
            return low <= self.value <= high
        op, bound = self.target.split()
        return self.value <= float(bound) if op == "<=" else self.value >= float(bound)

    @classmethod
    def estimate(cls, section: str, metric: str, values: list[float], **kw: Any) -> Row:
        """A row whose value is the median of per-repeat ``values``, with its 95% interval as the spread."""
        median, low, high = median_ci(values)
        return cls(section, metric, median, spread=max(high - median, median - low), low=low, high=high, **kw)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def print_table(rows: list[Row]) -> None:
    head = f"{'section':<14} {'metric':<58} {'value':>10} {'± spread':>9} {'target':>9} {'met':>4}"
    print(head)
    print("-" * len(head))
    for r in rows:
        met = {True: "yes", False: "NO", None: ""}[r.met]
        value = f"{r.value:.3f}{r.unit}" if r.unit in ("x", "") else f"{r.value:.1f} {r.unit}"
        print(f"{r.section:<14} {r.metric:<58} {value:>10} {r.spread:>9.3f} {r.target:>9} {met:>4}")
        if r.detail:
            print(f"{'':<14}   {r.detail}")


def one_thread_per_stage() -> None:
    """The benchmarks' rule: one intra-op thread per stage (and on the calling thread)."""
    torch.set_num_threads(1)

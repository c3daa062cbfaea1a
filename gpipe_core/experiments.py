"""Timed experiments shared by the CLI, the book and the benchmarks.

Timing on shared machines is noisy, so every number here is a median of
repeated runs after a warm-up, and every ratio compares two things measured in
the same process one after the other.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .pipe import GPipe
from .theory import bubble_fraction, ideal_speedup


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> tuple[float, float]:
    """Median and spread (max - min) of ``repeats`` timed calls of ``fn``, in seconds."""
    times = interleaved_times({"fn": fn}, repeats, warmup)["fn"]
    return statistics.median(times), max(times) - min(times)


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int = 3, warmup: int = 1,
                      clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Time candidates round-robin (a, b, a, b, ...) so drift on a shared machine hits them alike.

    ``clock`` is wall time by default; ``time.process_time`` measures the CPU time
    of this process instead (all its threads), which other tenants disturb less.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            runs[name].append(clock() - start)
    return runs


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int = 5) -> dict[str, float]:
    """Median seconds of each candidate, timed in turns after one warm-up call each."""
    return {name: statistics.median(runs) for name, runs in interleaved_times(fns, repeats).items()}


def plain_step(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Forward and backward of the full batch, no engine at all."""
    loss = loss_fn(model(x), y)
    loss.backward()
    return loss.detach()


def with_threads(threads: int, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with ``threads`` intra-op threads on the calling thread."""

    def run() -> object:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    return run


@dataclass
class SweepRow:
    M: int
    pipeline_s: float
    sequential_s: float
    speedup: float
    ideal: float
    bubble_measured: float
    bubble_theory: float


def sweep_micro_batches(model: nn.Sequential, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor],
                        K: int, micro_batches: list[int], repeats: int = 3, checkpoint: str = "never",
                        threads_per_stage: int = 1,
                        progress: Callable[[SweepRow], None] | None = None) -> list[SweepRow]:
    """Speedup of K stages over the same micro-batched work on one stage, for each M.

    Both sides use ``threads_per_stage`` intra-op threads per stage, so the ideal
    is K*M/(M+K-1).
    """
    rows = []
    for M in micro_batches:
        pipe = GPipe(model, partitions=K, chunks=M, checkpoint=checkpoint, threads_per_stage=threads_per_stage)
        one = GPipe(copy.deepcopy(model), partitions=1, chunks=M, checkpoint=checkpoint,
                    threads_per_stage=threads_per_stage)
        t_pipe, _ = median_time(lambda p=pipe: p.step(x, y, loss_fn, seed=0), repeats)
        bubble = pipe.trace.bubble() if pipe.trace else float("nan")
        t_one, _ = median_time(lambda p=one: p.step(x, y, loss_fn, seed=0), repeats)
        pipe.close()
        one.close()
        row = SweepRow(M, t_pipe, t_one, t_one / t_pipe, ideal_speedup(M, K), bubble, bubble_fraction(M, K))
        rows.append(row)
        if progress:
            progress(row)
    model.zero_grad(set_to_none=True)
    return rows


def plot_sweep(rows: list[SweepRow], K: int, path: str | None = None):  # noqa: ANN201 - matplotlib figure
    """Speedup and bubble against M, measured beside the ideal."""
    import matplotlib

    if path:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Ms = [r.M for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(Ms, [r.speedup for r in rows], "o-", label="measured")
    a.plot(Ms, [r.ideal for r in rows], "k--", label="ideal K·M/(M+K-1)")
    a.set(xscale="log", xlabel="micro-batches M", ylabel="speedup", title=f"K={K}: speedup over one stage")
    b.plot(Ms, [r.bubble_measured for r in rows], "o-", label="measured idle fraction")
    b.plot(Ms, [r.bubble_theory for r in rows], "k--", label="(K-1)/(M+K-1)")
    b.set(xscale="log", xlabel="micro-batches M", ylabel="bubble", title="bubble")
    for ax in (a, b):
        ax.set_xticks(Ms, [str(m) for m in Ms])
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120)
    return fig

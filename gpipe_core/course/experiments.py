"""Timed experiments shared by the CLI, the book and the benchmarks.

Timing on shared machines is noisy, so every number here is a median of
repeated runs after a warm-up, and every ratio compares two things measured in
the same process one after the other.
"""

from __future__ import annotations

import copy
import functools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..engine.pipe import GPipe
from ..sim.theory import bubble_fraction, ideal_speedup


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> tuple[float, float]:
    """Median and spread (max - min) of ``repeats`` timed calls of ``fn``, in seconds."""
    times = interleaved_times({"fn": fn}, repeats, warmup)["fn"]
    return statistics.median(times), max(times) - min(times)


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int = 3, warmup: int = 1,
                      clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Time candidates in rounds, the order reversed every other round (a b, b a, a b, ...).

    Drift on a shared machine hits every candidate alike, and whatever one
    leaves behind for the next (freed memory, warm caches) favours each side
    equally often. ``runs[k][r]`` is candidate k's time in round r, so two
    candidates pair up by round. ``clock`` is wall time by default;
    ``time.process_time`` measures the CPU time of this process instead (all
    its threads), which other tenants disturb less.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            start = clock()
            fns[name]()
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
    pipeline_runs: tuple[float, ...] = ()  # every timed run, in turns with the one-stage side's
    sequential_runs: tuple[float, ...] = ()

    @property
    def readable(self) -> bool:
        """Every pipelined run beat every one-stage run, or every one lost: the runs agree on a side."""
        if not self.pipeline_runs or not self.sequential_runs:
            return False
        return (max(self.pipeline_runs) < min(self.sequential_runs)
                or min(self.pipeline_runs) > max(self.sequential_runs))


def sweep_micro_batches(model: nn.Sequential, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor],
                        K: int, micro_batches: list[int], repeats: int = 3, checkpoint: str = "never",
                        threads_per_stage: int = 1,
                        progress: Callable[[SweepRow], None] | None = None) -> list[SweepRow]:
    """Speedup of K stages over the same micro-batched work on one stage, for each M.

    Both sides use ``threads_per_stage`` intra-op threads per stage, so the ideal
    is K*M/(M+K-1). The two sides are timed in turns (:func:`interleaved_times`),
    so a load that comes and goes hits both; each row keeps every run, and
    ``row.readable`` says whether the runs agree on which side is faster.
    """
    rows = []
    for M in micro_batches:
        pipe = GPipe(model, partitions=K, chunks=M, checkpoint=checkpoint, threads_per_stage=threads_per_stage)
        one = GPipe(copy.deepcopy(model), partitions=1, chunks=M, checkpoint=checkpoint,
                    threads_per_stage=threads_per_stage)
        runs = interleaved_times({"pipe": lambda p=pipe: p.step(x, y, loss_fn, seed=0),
                                  "one": lambda p=one: p.step(x, y, loss_fn, seed=0)}, repeats)
        bubble = pipe.trace.bubble() if pipe.trace else float("nan")
        pipe.close()
        one.close()
        t_pipe, t_one = statistics.median(runs["pipe"]), statistics.median(runs["one"])
        row = SweepRow(M, t_pipe, t_one, t_one / t_pipe, ideal_speedup(M, K), bubble, bubble_fraction(M, K),
                       tuple(runs["pipe"]), tuple(runs["one"]))
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


@dataclass
class Transparency:
    """Loss curves of one model trained through pipes of every (K, M), and what they say.

    ``curves[(K, M, seed)]`` is the loss of every step; ``plain[(M, seed)]`` the
    same training without the engine (the plain model, one loss.backward() on
    the full batch for M = 1, the micro-batched sequential model otherwise).
    ``norm_gap[(K, M, seed)]`` is, for BatchNorm models, the largest difference
    between the first BatchNorm's running statistics and the full-batch
    model's after training, relative to the statistic's largest entry; ``plain_norm_gap[M]`` the same for a plain
    (not deferred) BatchNorm in the pipe, the pitfall.
    """

    model: str
    steps: int
    curves: dict[tuple[int, int, int], list[float]]
    plain: dict[tuple[int, int], list[float]]
    norm_gap: dict[tuple[int, int, int], float]
    plain_norm_gap: dict[int, float]

    def gap_over_k(self) -> float:
        """Largest loss difference, any step, between a pipe and the engine-free model of the same M and seed."""
        return max(abs(a - b) for (K, M, s), c in self.curves.items() for a, b in zip(c, self.plain[(M, s)]))

    def gap_over_m(self) -> float:
        """Largest loss difference, any step, between any two M of the same seed (the engine-free runs)."""
        seeds = {s for (_, s) in self.plain}
        return max(abs(a - b) for s in seeds for (M1, s1), c1 in self.plain.items() if s1 == s
                   for (M2, s2), c2 in self.plain.items() if s2 == s for a, b in zip(c1, c2))


def _transparency_task(model: str, seed: int, small: bool):  # noqa: ANN202 - (model, loss_fn, x, y)
    """The model and one fixed batch: a tiny GPT on Shakespeare bytes, or a BatchNorm MLP on a teacher task."""
    torch.manual_seed(seed)
    if model == "gpt":
        from ..workloads.gpt import gpt, lm_loss, text_batches
        from ..workloads.tokenizer import corpus, encode

        net = gpt(layers=4, dim=32 if small else 64, heads=2, context=32, dropout=0.0)
        x, y = next(text_batches(encode(corpus()), 32, 32, seed=seed))
        return net, lm_loss, x, y
    from ..workloads.models import bn_mlp, teacher_task

    net = bn_mlp(8, 32 if small else 64, classes=10)
    x, y = teacher_task(64, 32 if small else 64, classes=10, seed=seed)
    return net, nn.functional.cross_entropy, x * 3 + 1, y  # off-centre inputs: running statistics have work to do


def _train(net: nn.Module, step: Callable[..., Tensor], batch: tuple, steps: int, lr: float) -> list[float]:
    """``steps`` Adam steps of ``step(x, y, loss_fn)`` on the fixed ``batch = (x, y, loss_fn)``; the losses."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(step(*batch)))
        optimizer.step()
    return losses


def _norm_gap(net: nn.Module, full: nn.Module) -> float:
    """Largest difference of the first layer's running mean and variance, relative to the largest entry of each."""
    a, b = net[0], full[0]
    return max(((a.running_mean - b.running_mean).abs().max() / b.running_mean.abs().max()).item(),
               ((a.running_var - b.running_var).abs().max() / b.running_var.abs().max()).item())


def transparency(model: str, Ks: Sequence[int] = (1, 2, 4), Ms: Sequence[int] = (1, 4, 16),
                 seeds: Sequence[int] = (0, 1), steps: int = 20, lr: float = 3e-3, small: bool = True) -> Transparency:
    """Train ``model`` ("gpt" or "bn") for ``steps`` Adam steps through GPipe at every K, M and seed.

    No dropout, so every difference is the engine's or micro-batching's. The
    BatchNorm model runs with ``deferred_batch_norm=True``; its first
    BatchNorm, which sees the raw inputs, is compared with the full-batch
    model's after training, and so is a plain BatchNorm in a K=2 pipe. One
    intra-op thread everywhere: the models are tiny, and this is about values,
    not speed.
    """
    return with_threads(1, functools.partial(_transparency, model, Ks, Ms, seeds, steps, lr, small))()


def _transparency(model: str, Ks: Sequence[int], Ms: Sequence[int], seeds: Sequence[int], steps: int, lr: float,
                  small: bool) -> Transparency:
    from ..engine.batchnorm import convert_deferred_batch_norm
    from ..engine.reference import sequential_step

    curves, plain, norm_gap, plain_norm_gap = {}, {}, {}, {}
    for seed in seeds:
        net0, loss_fn, x, y = _transparency_task(model, seed, small)
        batch = (x, y, loss_fn)
        full = copy.deepcopy(net0)
        full_losses = _train(full, functools.partial(plain_step, full), batch, steps, lr)
        for M in Ms:
            if M == 1:
                plain[(M, seed)] = full_losses
            else:
                ref = convert_deferred_batch_norm(copy.deepcopy(net0), M)
                plain[(M, seed)] = _train(ref, functools.partial(sequential_step, ref, chunks=M), batch, steps, lr)
            for K in Ks:
                net = copy.deepcopy(net0)
                with GPipe(net, partitions=K, chunks=M, deferred_batch_norm=True, threads_per_stage=1) as pipe:
                    curves[(K, M, seed)] = _train(net, functools.partial(pipe.step, seed=0), batch, steps, lr)
                if model == "bn":
                    norm_gap[(K, M, seed)] = _norm_gap(net, full)
            if model == "bn" and seed == seeds[0]:
                net = copy.deepcopy(net0)
                with GPipe(net, partitions=2, chunks=M, threads_per_stage=1) as pipe:
                    _train(net, functools.partial(pipe.step, seed=0), batch, steps, lr)
                plain_norm_gap[M] = _norm_gap(net, full)
    return Transparency(model, steps, curves, plain, norm_gap, plain_norm_gap)


def plot_transparency(result: Transparency, seed: int = 0):  # noqa: ANN201 - matplotlib figure
    """One panel per M: the loss curves of every K over the engine-free model's."""
    import matplotlib.pyplot as plt

    Ms = sorted({M for (_, M, _) in result.curves})
    Ks = sorted({K for (K, _, _) in result.curves})
    fig, axes = plt.subplots(1, len(Ms), figsize=(3.6 * len(Ms), 3.2), sharey=True)
    for ax, M in zip(axes, Ms):
        ax.plot(result.plain[(M, seed)], color="0.75", lw=6, label="no engine")
        for K, style in zip(Ks, ["-", "--", ":", "-."]):
            ax.plot(result.curves[(K, M, seed)], style, label=f"K={K}")
        ax.set(title=f"{result.model}: M={M}", xlabel="step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss")
    axes[0].legend()
    fig.tight_layout()
    return fig

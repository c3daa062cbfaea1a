"""Metric 2: how close two stages get to the ideal K*M/(M+K-1).

The fair baseline for a pipeline is the same micro-batched work done by one
stage with the same resources (one intra-op thread): then the only difference
is the overlap, and the ideal speedup is K*M/(M+K-1). Against the full batch on
one or two intra-op threads the comparison is about the hardware, and on one
CPU intra-op parallelism can win: those rows are informative.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from gpipe_core import GPipe
from gpipe_core.experiments import plain_step, with_threads
from gpipe_core.models import mlp
from gpipe_core.theory import ideal_speedup

from .common import Row, interleaved, ratio_spread


def run(N: int = 1024, H: int = 1024, L: int = 24, Ms: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
        repeats: int = 3) -> tuple[list[Row], list[dict]]:
    torch.manual_seed(0)
    model = mlp(L, H)
    x, y = torch.randn(N, H), torch.randn(N, H)
    loss_fn = nn.functional.mse_loss
    rows, curve = [], []
    for M in Ms:
        pipe = GPipe(model, partitions=2, chunks=M, checkpoint="never", threads_per_stage=1)
        one = GPipe(copy.deepcopy(model), partitions=1, chunks=M, checkpoint="never", threads_per_stage=1)
        t = interleaved({"pipe": lambda p=pipe: p.step(x, y, loss_fn, seed=0),
                         "one": lambda p=one: p.step(x, y, loss_fn, seed=0)}, repeats)
        speedup = t["one"].median / t["pipe"].median
        eff = speedup / ideal_speedup(2, M)
        curve.append({"M": M, "speedup": speedup, "ideal": ideal_speedup(2, M), "efficiency": eff,
                      "bubble": pipe.trace.bubble(), "trace_costs": pipe.trace})
        rows.append(Row("2 efficiency", f"K=2 M={M}: speedup / ideal {ideal_speedup(2, M):.2f}", eff,
                        target=">= 0.95" if M == 8 else "",
                        spread=ratio_spread(t["one"], t["pipe"]) / ideal_speedup(2, M),
                        detail=f"speedup {speedup:.2f}x ({t['pipe'].median:.2f} s vs {t['one'].median:.2f} s)"))
        if M == 8:
            full = interleaved({"pipe": lambda p=pipe: p.step(x, y, loss_fn, seed=0),
                                "1 thread": with_threads(1, lambda: plain_step(model, x, y, loss_fn)),
                                "2 threads": with_threads(2, lambda: plain_step(model, x, y, loss_fn))}, repeats)
            for name in ("1 thread", "2 threads"):
                rows.append(Row("2 efficiency", f"K=2 M=8 pipeline vs full batch on {name}",
                                full[name].median / full["pipe"].median,
                                spread=ratio_spread(full[name], full["pipe"]),
                                detail=f"{full['pipe'].median:.2f} s vs {full[name].median:.2f} s"))
        model.zero_grad(set_to_none=True)
    return rows, curve

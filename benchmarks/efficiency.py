"""Metric 2: how close two stages get to the ideal K*M/(M+K-1).

The fair baseline for a pipeline is the same micro-batched work done by one
stage with the same resources (one intra-op thread): then the only difference
is the overlap, and the ideal speedup is K*M/(M+K-1). Against the full batch on
one or two intra-op threads the comparison is about the hardware, and on one
CPU intra-op parallelism can win: those rows are informative.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

import torch
from torch import nn

from gpipe_core import GPipe
from gpipe_core.course.experiments import plain_step, with_threads
from gpipe_core.engine.partition import balance_by_count, split_module
from gpipe_core.sim.theory import ideal_speedup
from gpipe_core.workloads.models import mlp

from .common import Row, attainable_speedup, interleaved, paired


def two_stage_work(model: nn.Sequential, x: torch.Tensor, M: int) -> dict[str, Callable[[], None]]:
    """Both stages' work with no dependencies: one after the other on one thread, and on two threads at once.

    If two cores cannot run two independent stage-sized streams of GEMMs twice as
    fast as one (shared memory bandwidth, a busy host, the GIL for small layers),
    no pipeline can either: serial / parallel is the machine's ceiling.
    """
    halves = split_module(model, balance_by_count(len(model), 2))
    chunks = torch.tensor_split(x, M)

    def stage_work(half: nn.Sequential) -> None:
        torch.set_num_threads(1)
        for chunk in chunks:
            half(chunk.detach().requires_grad_()).sum().backward()

    def serial() -> None:
        for half in halves:
            stage_work(half)

    def parallel() -> None:
        workers = [threading.Thread(target=stage_work, args=(h,)) for h in halves]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    return {"serial": serial, "parallel": parallel}


def hardware_scaling(model: nn.Sequential, x: torch.Tensor, M: int, repeats: int,
                     section: str = "2 efficiency", name: str = "") -> Row:
    """The machine's own ceiling (:func:`two_stage_work`'s serial / parallel), as a row."""
    t = interleaved(two_stage_work(model, x, M), repeats)
    model.zero_grad(set_to_none=True)
    return Row.estimate(section, f"{name}hardware: both stages' work, M={M}, on two threads with no dependencies",
                        paired(t["serial"], t["parallel"]),
                        detail="the ceiling any 2-stage CPU pipeline meets on this machine (2.0 would be perfect)")


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
        n = max(repeats, 7) if M == 8 else repeats  # the target row gets enough pairs for a 95% interval
        t = interleaved({"pipe": lambda p=pipe: p.step(x, y, loss_fn, seed=0),
                         "one": lambda p=one: p.step(x, y, loss_fn, seed=0)}, n)
        ideal = ideal_speedup(M, 2)
        row = Row.estimate("2 efficiency", f"K=2 M={M}: speedup / ideal {ideal:.2f}",
                           [s / ideal for s in paired(t["one"], t["pipe"])], target=">= 0.97" if M == 8 else "",
                           detail=f"speedup {t['one'].median / t['pipe'].median:.2f}x "
                                  f"({t['pipe'].median:.2f} s vs {t['one'].median:.2f} s)")
        rows.append(row)
        curve.append({"M": M, "speedup": row.value * ideal, "ideal": ideal, "efficiency": row.value,
                      "bubble": pipe.trace.bubble(), "trace_costs": pipe.trace})
        if M == 8:
            ceiling = hardware_scaling(model, x, M, n)
            here = attainable_speedup(ideal, ceiling.value)
            rows += [ceiling, Row("2 efficiency", "K=2 M=8: speedup / what this machine allows",
                                  row.value * ideal / here,
                                  detail=f"the ideal {ideal:.2f} scaled by the ceiling above: {here:.2f}; 1.0 means "
                                         "the pipeline overlaps as well as two threads with no dependencies at all")]
            full = interleaved({"pipe": lambda p=pipe: p.step(x, y, loss_fn, seed=0),
                                "1 thread": with_threads(1, lambda: plain_step(model, x, y, loss_fn)),
                                "2 threads": with_threads(2, lambda: plain_step(model, x, y, loss_fn))}, repeats)
            for name in ("1 thread", "2 threads"):
                rows.append(Row.estimate("2 efficiency", f"K=2 M=8 pipeline vs full batch on {name}",
                                         paired(full[name], full["pipe"]),
                                         detail=f"{full['pipe'].median:.2f} s vs {full[name].median:.2f} s"))
        model.zero_grad(set_to_none=True)
    return rows, curve

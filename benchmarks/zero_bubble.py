"""Metric 7: what the split backward costs and what zero-bubble scheduling buys.

Two questions, each answered on the engine with the same model:

* **I + W against B.** Zero-bubble schedules cut a stage's backward into I (the
  input's gradient, sent upstream at once) and W (the weight gradients,
  deferred). The cut is only worth it if the halves together cost about what
  the whole did. Both tables run on the inline executor, where every action
  runs alone on one thread, so the trace's durations are the actions' own;
  per repeat, the stage's total I + W time is divided by its total B time.
  Stage 0 needs no input gradient, so the row is for the last stage, whose I
  does the full work.
* **ZB-H1 against 1F1B.** The same K, M and model on the threaded executor:
  1F1B's step time over ZB-H1's (above 1 means ZB-H1 is faster). Beside it the
  simulator's prediction of the same ratio, each table costed with what its
  own run measured (1F1B's whole B, ZB-H1's I and W), so the reader sees
  whether the engine gets what the table promises, split cost included.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from gpipe_core import GPipe
from gpipe_core.workloads.models import mlp

from .common import Row, interleaved


def _stage_time(pipe: GPipe, stage: int, kinds: str) -> float:
    return sum(e.duration for e in pipe.trace.events if e.stage == stage and e.kind in kinds)


def split_cost(N: int = 256, H: int = 1024, L: int = 16, M: int = 8, repeats: int = 7) -> list[Row]:
    """I + W against B on the same stage, from the traces of two inline runs timed in turns."""
    torch.manual_seed(0)
    model = mlp(L, H)
    x, y = torch.randn(N, H), torch.randn(N, H)
    loss_fn = nn.functional.mse_loss
    pipes = {name: GPipe(model, partitions=2, chunks=M, checkpoint="never", schedule=name,
                         threads_per_stage=1, executor="inline") for name in ("1f1b", "zb-h1")}
    ratios: dict[int, list[float]] = {0: [], 1: []}
    for r in range(repeats + 1):  # the first pair warms up
        for pipe in pipes.values():
            pipe.step(x, y, loss_fn, seed=0)
        if r:
            for s in ratios:
                ratios[s].append(_stage_time(pipes["zb-h1"], s, "IW") / _stage_time(pipes["1f1b"], s, "B"))
    model.zero_grad(set_to_none=True)
    row = Row.estimate("7 zero bubble", f"I + W / B on the last stage ({L // 2}x Linear({H},{H}), N={N}, M={M})",
                       ratios[1], target="<= 1.10",
                       detail=f"summed over the step's micro-batches, inline executor, {len(ratios[1])} paired "
                              f"runs; stage 0 (no input gradient): {sorted(ratios[0])[len(ratios[0]) // 2]:.3f}")
    return [row]


def zb_against_1f1b(N: int = 256, H: int = 1024, L: int = 16, K: int = 2, M: int = 8,
                    repeats: int = 5) -> list[Row]:
    """Step time of 1F1B over ZB-H1 on the threaded engine, and the simulator's prediction beside it."""
    torch.manual_seed(0)
    model = mlp(L, H)
    x, y = torch.randn(N, H), torch.randn(N, H)
    loss_fn = nn.functional.mse_loss
    pipes = {name: GPipe(copy.deepcopy(model), partitions=K, chunks=M, checkpoint="never", schedule=name,
                         threads_per_stage=1) for name in ("1f1b", "zb-h1")}
    t = interleaved({name: (lambda p=p: p.step(x, y, loss_fn, seed=0)) for name, p in pipes.items()}, repeats)
    measured = [a / b for a, b in zip(t["1f1b"].runs, t["zb-h1"].runs)]
    spans = {name: predicted_span(p) for name, p in pipes.items()}
    errors = ", ".join(f"{name} {abs(sim / real - 1):.1%}" for name, (sim, real) in spans.items())
    predicted = spans["1f1b"][0] / spans["zb-h1"][0]
    return [Row.estimate(
        "7 zero bubble", f"ZB-H1 against 1F1B: step time 1F1B / ZB-H1, K={K} M={M} ({L}x Linear({H},{H}), N={N})",
        measured,
        detail=f"1F1B {t['1f1b'].median * 1e3:.0f} ms, ZB-H1 {t['zb-h1'].median * 1e3:.0f} ms (paired repeats, "
               f"threads); the simulator predicts {predicted:.3f}"),
        Row("7 zero bubble", f"ZB-H1 against 1F1B: the simulator's predicted ratio, K={K} M={M}", predicted,
            detail="each table simulated with the per-stage F, B (or I and W) costs and hand-off measured in its "
                   f"own last run; simulated against measured step time of those runs: {errors}")]


def predicted_span(pipe: GPipe) -> tuple[float, float]:
    """The simulator's step time for the pipe's table with the costs of its last run, and that run's real span."""
    from gpipe_core.sim.simulate import costs_from_trace, simulate

    trace = pipe.trace
    return simulate(pipe.table, pipe.K, costs_from_trace(trace)).span, trace.span


def run(quick: bool = False) -> list[Row]:
    if quick:
        return split_cost(N=64, H=128, L=8, M=4, repeats=3) + zb_against_1f1b(N=64, H=128, L=8, M=4, repeats=3)
    return split_cost() + zb_against_1f1b()

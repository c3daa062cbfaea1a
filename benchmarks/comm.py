"""Metric 9: the simulator's step time, communication included, against the engine's.

The question: given what each action costs and what a hop between devices
costs, does :func:`gpipe_core.sim.simulate.simulate` predict how long the real
engine takes for a step? Each case runs a schedule on the threaded engine
(``executor="ranks"``: a worker per device) with

* stages of :class:`gpipe_core.sim.waits.Wait` layers, whose F, I and W sleep
  known times (a sleeping worker needs no core, so K devices run side by side
  even on a two-core machine, and the check is about the engine, not the
  machine's arithmetic);
* every message between two devices delayed by ``latency + bytes /
  bandwidth`` (:func:`gpipe_core.sim.comm.inject`, the bytes of the tensor
  really sent), either *beside compute* (the message arrives later, the
  sender goes on) or *blocking* (the sender waits for its send);

and compares the step's wall-clock time with the simulator's span for the same
table under :class:`~gpipe_core.sim.simulate.Costs` whose F, I, W (and B) are the
per-stage means of that run's own measured actions and whose link is the one
injected (the simulator's own message size, not the engine's). So the row
tests the timeline arithmetic (critical path, hops, blocking sends, the V's
free tip, DualPipeV's overlapped cells run in turn, ``Costs.in_turn``) rather
than the sleep's precision. The prediction from the configured times alone
(ignoring what the engine adds per action) is in the detail.

Each row: measured / predicted, the median over repeats with its 95% interval,
target within 5% either way.
"""

from __future__ import annotations

import dataclasses
import time

import torch
from torch import nn

from gpipe_core import GPipe
from gpipe_core.schedules.zoo import BUILTINS
from gpipe_core.sim.comm import Comm, inject
from gpipe_core.sim.simulate import costs_from_trace, simulate
from gpipe_core.sim.waits import wait_costs, wait_model

from .common import Row, median_ci

SCHEDULES = ("1f1b", "zb-h1", "zbv", "dualpipev")
SETTINGS = {"beside compute": True, "blocking sends": False}


def case(name: str, overlap: bool, K: int, M: int, N: int, H: int, action: float, latency: float,
         transfer: float, repeats: int) -> Row:
    """One schedule under one link setting: measured step / predicted step (see the module docstring)."""
    b = BUILTINS[name]
    V, S = b.virtual, K * b.virtual
    message = (N // M) * H * 4  # float32 activations of one micro-batch at a stage boundary
    comm = Comm(latency=latency, bandwidth=message / transfer, message=message, overlap=overlap)
    x = torch.randn(N, H)
    measured, predicted = [], []
    with GPipe(wait_model(S, H, action / V, action / V, action / V), balance=[1] * S, virtual=V,
               placement=b.placement(K), chunks=M, schedule=name, checkpoint="never", executor="ranks") as pipe:
        inject(pipe, comm)
        for r in range(repeats + 1):  # the first step warms up
            start = time.perf_counter()
            pipe.step(x, x, nn.functional.mse_loss, seed=0)
            wall = time.perf_counter() - start
            costs = dataclasses.replace(costs_from_trace(pipe.trace), handoff=0.0, comm=comm, in_turn=True)
            if r:
                measured.append(wall)
                predicted.append(simulate(pipe.table, K, costs, placement=pipe.placement).span)
        settings = simulate(pipe.table, K, dataclasses.replace(
            wait_costs(S, action / V, action / V, action / V, comm), in_turn=True), placement=pipe.placement).span
    ratios = [m / p for m, p in zip(measured, predicted)]
    med_m, med_p = median_ci(measured)[0], median_ci(predicted)[0]
    how = "beside compute" if overlap else "blocking sends"
    return Row.estimate(
        "9 comm", f"{name}, {how}: predicted {med_p * 1e3:.0f} ms, measured {med_m * 1e3:.0f} ms", ratios,
        target="0.95..1.05",
        detail=f"K={K} M={M}, F = I = W = {action * 1e3:.0f} ms per device share, hop {latency * 1e3:.0f} ms + "
               f"{message} B / {message / transfer / 1e6:.2f} MB/s; measured / predicted over {len(ratios)} steps; "
               f"from the configured times alone the simulator says {settings * 1e3:.0f} ms")


def run(quick: bool = False) -> list[Row]:
    sizes = dict(K=2, M=4, N=32, H=64, action=0.010, latency=0.002, transfer=0.003, repeats=2) if quick else \
        dict(K=4, M=8, N=64, H=256, action=0.040, latency=0.008, transfer=0.012, repeats=5)
    return [case(name, overlap, **sizes) for name in SCHEDULES for overlap in SETTINGS.values()]  # type: ignore[arg-type]

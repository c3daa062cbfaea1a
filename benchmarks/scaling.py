"""Metric 6: the scaling curve, measured for K=2 and predicted for K = 4, 8, 16.

The simulator gets the per-stage forward/backward durations measured in the
real K=2 run and must predict that run's step time within 5%; the same costs,
split over more stages (each of K stages doing 2/K of a K=2 stage's work), then
predict the curve for machines with more cores than this one, with the hand-off
delay measured here.
"""

from __future__ import annotations

from gpipe_core.schedules.schedule import gpipe_schedule
from gpipe_core.sim.simulate import Costs, costs_from_trace, simulate
from gpipe_core.sim.theory import bubble_fraction, ideal_speedup

from .common import Row


def run(curve: list[dict]) -> tuple[list[Row], list[dict]]:
    """``curve`` is the K=2 sweep of :mod:`benchmarks.efficiency` (it holds each M's real trace)."""
    rows, points, worst = [], [], 0.0
    for point in curve:
        M, trace = point["M"], point["trace_costs"]
        costs = costs_from_trace(trace)
        predicted = simulate(gpipe_schedule(M, 2), 2, costs).span
        error = abs(predicted / trace.span - 1)
        worst = max(worst, error)
        points.append({"K": 2, "M": M, "speedup": point["speedup"], "bubble": trace.bubble(),
                       "bubble_theory": bubble_fraction(M, 2), "simulated": False})
        per_stage_f = [sum(costs.forward) / 2] * 2  # one K=2 stage's work, the same on both
        per_stage_b = [sum(costs.backward) / 2] * 2
        for K in (4, 8, 16):
            c = Costs(forward=[per_stage_f[0] * 2 / K] * K, backward=[per_stage_b[0] * 2 / K] * K,
                      handoff=costs.handoff)
            sim = simulate(gpipe_schedule(M, K), K, c)
            sequential = M * K * (c.of(c.forward, 0) + c.of(c.backward, 0))
            points.append({"K": K, "M": M, "speedup": sequential / sim.span, "bubble": sim.bubble(),
                           "bubble_theory": bubble_fraction(M, K), "ideal": ideal_speedup(M, K), "simulated": True})
        rows.append(Row("6 scaling", f"K=2 M={M}: measured bubble (theory {bubble_fraction(M, 2):.3f})",
                        trace.bubble(), unit="",
                        detail=f"simulated step {predicted:.3f} s vs measured {trace.span:.3f} s"))
    rows.append(Row("6 scaling", "simulation vs real K=2 step time, largest relative error", worst, unit="",
                    target="<= 0.05"))
    for K in (4, 8, 16):
        best = [p for p in points if p["K"] == K and p["M"] == max(q["M"] for q in curve)][0]
        rows.append(Row("6 scaling", f"K={K} M={best['M']} (simulated): speedup / ideal {best['ideal']:.2f}",
                        best["speedup"] / best["ideal"], detail=f"bubble {best['bubble']:.3f}"))
    return rows, points

"""The timeline a schedule would produce, from a cost model, without torch.

Running real workers takes seconds and needs K cores; predicting the timeline
takes microseconds and works for any K and M. :func:`simulate` executes the
per-stage orders with given forward / backward / recompute durations and a
hand-off latency, and returns a :class:`~gpipe_core.trace.Trace` of the same
shape the runtime measures, so the two can be drawn and compared side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .schedule import Action, ScheduleError, dependencies, stage_orders
from .trace import Trace


@dataclass(frozen=True)
class Costs:
    """Per-stage durations in seconds (or ticks): lists of length K, or one number for all."""

    forward: Sequence[float] | float = 1.0
    backward: Sequence[float] | float = 1.0
    recompute: Sequence[float] | float = 0.0
    handoff: float = 0.0

    def of(self, field: Sequence[float] | float, stage: int) -> float:
        return float(field if isinstance(field, (int, float)) else field[stage])


def simulate(schedule: Sequence[Sequence[Action]], K: int, costs: Costs | None = None,
             recompute: Sequence[bool] | bool = False, M: int | None = None) -> Trace:
    """Event-driven timeline of ``schedule`` under ``costs``.

    Each stage runs its actions in table order; an action starts when its
    stage is free and its dependencies have finished (plus ``handoff`` when the
    dependency ran on another stage). ``recompute`` says which micro-batches
    re-run their forward before backward (a bool for all of them).
    """
    costs = costs or Costs()
    orders = stage_orders(schedule, K)
    finish: dict[Action, float] = {}
    free = [0.0] * K
    heads = [0] * K
    trace = Trace(K)
    total = sum(len(o) for o in orders)
    while len(finish) < total:
        progressed = False
        for j in range(K):
            while heads[j] < len(orders[j]):
                a = orders[j][heads[j]]
                deps = dependencies(a, K)
                if any(d not in finish for d in deps):
                    break
                ready = max([free[j]] + [finish[d] + (costs.handoff if d.stage != j else 0.0) for d in deps])
                t = ready
                if a.kind == "B" and _recomputes(recompute, a.microbatch):
                    r = costs.of(costs.recompute, j)
                    if r > 0:
                        trace.add(j, a.microbatch, "R", t, t + r)
                        t += r
                d = costs.of(costs.forward if a.kind == "F" else costs.backward, j)
                trace.add(j, a.microbatch, a.kind, t, t + d)
                finish[a] = free[j] = t + d
                heads[j] += 1
                progressed = True
        if not progressed:
            raise ScheduleError("the schedule deadlocks: validate it with gpipe_core.schedule.validate")
    return trace


def _recomputes(recompute: Sequence[bool] | bool, microbatch: int) -> bool:
    return recompute if isinstance(recompute, bool) else bool(recompute[microbatch])


def costs_from_trace(trace: Trace) -> Costs:
    """Per-stage mean forward / backward / recompute durations measured in a real trace.

    The hand-off is the mean delay between the moment an action could have
    started (its stage free, its input produced upstream) and its real start.
    Means, not medians: a cost model must keep the total time of the run, and
    with few micro-batches a median picks one action's duration for all.
    """
    by_stage: dict[int, list] = {}
    for e in sorted(trace.events, key=lambda e: e.start):
        by_stage.setdefault(e.stage, []).append(e)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    def durations(kind: str, j: int) -> list[float]:
        return [e.duration for e in by_stage.get(j, []) if e.kind == kind]

    produced = {(e.stage, e.microbatch, e.kind): e.end for e in trace.events if e.kind in "FB"}
    delays = []
    for j, events in by_stage.items():
        for prev, e in zip(events, events[1:]):
            source = (j - 1, e.microbatch, "F") if e.kind == "F" else (j + 1, e.microbatch, "B")
            if source in produced:
                delays.append(max(0.0, e.start - max(prev.end, produced[source])))
    return Costs(
        forward=[mean(durations("F", j)) for j in range(trace.K)],
        backward=[mean(durations("B", j)) for j in range(trace.K)],
        recompute=[mean(durations("R", j)) for j in range(trace.K)],
        handoff=mean(delays),
    )

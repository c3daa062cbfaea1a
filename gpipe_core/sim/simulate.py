"""The timeline and the memory a schedule would produce, from a cost model, without torch.

Running real workers takes seconds and needs K cores; predicting takes
microseconds and works for any table, K and M. :func:`simulate` walks each
device's actions in table order with the schedule module's one walker
(:func:`gpipe_core.schedules.schedule.walk`): an action starts when its device is free
and what it depends on has ended, plus a hand-off when that ran on another
device. It returns a :class:`~gpipe_core.engine.trace.Trace` of the same shape the
runtime measures, so prediction and measurement draw side by side. An
overlapped F&B cell (DualPipe's) takes ``Costs.overlap`` when given, else
its forward and backward added (what a CPU worker, which runs them one after
the other, takes); its two actions are drawn end to end inside the cell, in
proportion to their own costs (with ``Costs.in_turn``, as the engine's
worker issues them: one after the other, each when its own inputs are
there). The costs live in :mod:`gpipe_core.sim.costs`. Communication (``Costs.comm``, a
:class:`~gpipe_core.sim.comm.Comm`): a hop between devices costs latency plus
bytes / bandwidth, a hop inside one device nothing; an overlapped send delays
only its receiver, a blocking one also keeps its sender busy (the action's
box ends when its computation does; the device stays taken until the send is done).

:func:`peak_memory` sizes the same timeline. What we model, per stage s and
micro-batch (``Sizes``, in bytes or in the memory law's units):

* stored (``activations[s]``): what autograd saves in a forward: held from the
  forward's start to the end of the backward that frees it (B, or W for a
  split backward: I keeps the graph so that W can still use the inputs of the
  weight-gradient matmuls, and W frees it);
* re-materialised (the micro-batch recomputes): the forward keeps only the
  stage input (``inputs[s]``); the recomputation R, at the start of the
  backward, rebuilds the stored set (the input is part of it: the first layer
  saves it), held from R's start to the end of B (or of W);
* between I and W, ``weight_inputs[s]`` if given: a smaller part of the stored
  set (what W really needs), for an engine that frees the rest after I;
* ``boundary_saved[s]``: the bytes of stage s's *output* that its own stored set
  holds (a last layer that saves its output, like ReLU). When stage s+1 runs on
  the same device (the tip of a V), its input is that very tensor, so while
  both hold micro-batch i it counts once. A recomputed output is a new tensor
  and shares nothing.

A device's peak is the largest sum over its stages at any instant; an action's
frees come before the next action's allocations. A device runs one action at a
time, so the peak depends only on each device's order: costs place it in time. "Micro-batches in flight
times the bytes one holds" is the special case of equal stages and no
recomputation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..engine.trace import Trace
from ..schedules.actions import Cell, Overlap, actions_of, flatten
from ..schedules.schedule import Action, check_placement, dependency_map, device_orders, walk
from .comm import send_cost
from .costs import UNIT, Costs, PerStage, costs_from_trace, per_stage

__all__ = ["UNIT", "Costs", "Sizes", "costs_from_trace", "peak_memory", "simulate", "times"]


def _stages(K: int, placement: Sequence[int] | None) -> tuple[int, list[int]]:
    if placement is None:
        return K, list(range(K))
    placement = check_placement(placement, len(placement))
    return len(placement), placement


def times(schedule: Sequence[Sequence[Cell]], K: int, costs: Costs | None = None,
          recompute: Sequence[bool] | bool = False, placement: Sequence[int] | None = None,
          ) -> dict[Action, tuple[float, float]]:
    """Start and end of every action's computation (a recomputation runs inside its B or I, at the start).

    The two actions of an overlapped F&B cell start together (when both can)
    and share its time end to end, the forward first, in proportion to what
    each costs alone; with ``costs.in_turn`` they are two actions in a row, each
    started when its own inputs are there (what the engine's worker does); a blocking send
    follows the computation that sends it, inside the cell's time, so an
    overlapped cell's forward sends before its backward computes. Every
    message leaves when its computation ends and arrives one hop later.
    """
    costs = costs or Costs()
    S, placement = _stages(K, placement)
    orders: list[list[Cell]] = device_orders(schedule, placement)
    if costs.in_turn:  # the halves of an overlapped cell run one after the other, each when its inputs are there
        orders = [list(flatten([order])) for order in orders]
    comm = costs.comm
    blocking = comm is not None and not comm.overlap

    def extra(a: Action) -> float:
        return costs.duration("R", a.stage) if a.kind in ("B", "I") and _recomputes(recompute, a.microbatch) else 0

    def alone(a: Action) -> float:
        return costs.duration(a.kind, a.stage) + extra(a)

    def layout(c: Cell) -> list[tuple[Action, float, float]]:
        """Each action of the cell with where its computation begins and ends, from the cell's start."""
        if isinstance(c, Overlap):
            f, b = alone(c.forward), alone(c.backward)
            total = f + b if costs.overlap is None else costs.of(costs.overlap, c.stage) + extra(c.backward)
            first = total * (f / (f + b) if f + b > 0 else 0.5)
            shares = [first, total - first]
        else:
            shares = [alone(c)]
        out, t = [], 0.0
        for a, share in zip(actions_of(c), shares):
            out.append((a, t, t + share))
            t += share + (send_cost(a, comm, placement) if blocking else 0.0)
        return out

    cells = {c: layout(c) for order in orders for c in order}
    span = {c: parts[-1][2] + (send_cost(parts[-1][0], comm, placement) if blocking else 0.0)
            for c, parts in cells.items()}
    early = {a: span[c] - done for c, parts in cells.items() for a, _, done in parts}  # computed before cell's end

    def handoff(dep: Action, a: Action) -> float:  # from the end of dep's cell to dep's message arriving
        if placement[dep.stage] == placement[a.stage]:
            return 0.0
        return costs.handoff + send_cost(dep, comm, placement) - early[dep]

    when = walk(orders, dependency_map(flatten(schedule), S), span.__getitem__, handoff)
    for parts in cells.values():
        begin = when[parts[0][0]][0]
        for a, b0, b1 in parts:
            when[a] = (begin + b0, begin + b1)
    return when


def simulate(schedule: Sequence[Sequence[Cell]], K: int, costs: Costs | None = None,
             recompute: Sequence[bool] | bool = False, placement: Sequence[int] | None = None) -> Trace:
    """Event-driven timeline of ``schedule`` under ``costs``, as a Trace (rows: devices).

    Without ``placement`` there are K stages, one per device. ``recompute`` says
    which micro-batches re-run their forward at the start of their backward (B,
    or I for a split one); a bool applies to all. M is the table's own.
    """
    costs = costs or Costs()
    S, placement = _stages(K, placement)
    rows = max(placement) + 1
    trace = Trace(rows, placement=None if rows == S else placement)
    for a, (start, end) in sorted(times(schedule, K, costs, recompute, placement).items(), key=lambda kv: kv[1]):
        if a.kind in ("B", "I") and _recomputes(recompute, a.microbatch):
            r = costs.duration("R", a.stage)
            if r > 0:
                trace.add(a.stage, a.microbatch, "R", start, start + r)
                start += r
        trace.add(a.stage, a.microbatch, a.kind, start, end)
    return trace


@dataclass(frozen=True)
class Sizes:
    """What one micro-batch holds on each stage (bytes, or units); see the module docstring."""

    activations: PerStage = 1.0
    inputs: PerStage = 0.0
    weight_inputs: PerStage | None = None
    boundary_saved: PerStage = 0.0

    def of(self, field: PerStage, stage: int) -> float:
        return per_stage(field, stage)


def peak_memory(schedule: Sequence[Sequence[Cell]], K: int, sizes: Sizes | None = None,
                costs: Costs | None = None, recompute: Sequence[bool] | bool = False,
                placement: Sequence[int] | None = None) -> list[float]:
    """Each device's peak activation memory over the timeline ``costs`` give (see the module docstring).

    With the default sizes (one unit stored per micro-batch, nothing else) the
    result is the peak number of micro-batches a device holds, in stage units.
    """
    sizes = sizes or Sizes()
    S, placement = _stages(K, placement)
    when = times(schedule, K, costs, recompute, placement)
    last_backward = {(a.microbatch, a.stage): a for a in when if a.kind in ("B", "W")}
    changes: list[tuple[float, int, int, float]] = []  # (time, 0 = free first / 1 = allocate, device, bytes)

    def hold(device: int, start: float, end: float, amount: float) -> None:
        if amount:
            changes.append((start, 1, device, amount))
            changes.append((end, 0, device, -amount))

    for a, (start, end) in when.items():
        d, s, i = placement[a.stage], a.stage, a.microbatch
        if a.kind == "F":
            freed = when[last_backward[(i, s)]][1]
            if _recomputes(recompute, i):
                first = Action("B", i, s) if Action("B", i, s) in when else Action("I", i, s)
                hold(d, start, when[first][0], sizes.of(sizes.inputs, s))
            else:
                hold(d, start, _stored_until(when, i, s, sizes), sizes.of(sizes.activations, s))
                if sizes.weight_inputs is not None and Action("I", i, s) in when:
                    hold(d, when[Action("I", i, s)][1], freed, sizes.of(sizes.weight_inputs, s))
        elif a.kind in ("B", "I") and _recomputes(recompute, i):
            freed = when[last_backward[(i, s)]][1]
            hold(d, start, _stored_until(when, i, s, sizes), sizes.of(sizes.activations, s))
            if sizes.weight_inputs is not None and a.kind == "I":
                hold(d, end, freed, sizes.of(sizes.weight_inputs, s))
    for s in range(S - 1):  # a boundary tensor two stages of one device both hold counts once
        if placement[s] == placement[s + 1] and sizes.of(sizes.boundary_saved, s):
            for i in range(1 + max(a.microbatch for a in when)):
                if not _recomputes(recompute, i):
                    both_until = min(when[last_backward[(i, s)]][1], when[last_backward[(i, s + 1)]][1])
                    hold(placement[s], when[Action("F", i, s + 1)][0], both_until, -sizes.of(sizes.boundary_saved, s))
    current, peak = [0.0] * (max(placement) + 1), [0.0] * (max(placement) + 1)
    for _, _, d, amount in sorted(changes):
        current[d] += amount
        peak[d] = max(peak[d], current[d])
    return peak


def _stored_until(when: dict[Action, tuple[float, float]], i: int, s: int, sizes: Sizes) -> float:
    """When the stored set of micro-batch i on stage s is freed: at B, at W, or at I if W keeps only part."""
    if Action("B", i, s) in when:
        return when[Action("B", i, s)][1]
    return when[Action("I" if sizes.weight_inputs is not None else "W", i, s)][1]


def _recomputes(recompute: Sequence[bool] | bool, microbatch: int) -> bool:
    return recompute if isinstance(recompute, bool) else bool(recompute[microbatch])

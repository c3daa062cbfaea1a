"""DualPipe (DeepSeek-V3, section 3.2.1): two pipelines in opposite directions, parameters held twice.

Why it is not just DualPipeV: DualPipe feeds micro-batches from *both* ends.
Half of them (direction 0) enter at device 0 and run the model's chunks
0..K-1 on devices 0..K-1; the other half (direction 1) enter at device K-1
and run the same chunks on devices K-1..0. Every device therefore holds two
chunks, d for direction 0 and K-1-d for direction 1 (DeepSeek's "2x"
parameters), and each micro-batch crosses K devices once, not a V twice.

The table keeps the engine's format. S = 2K stage *copies* in the V
placement (:func:`~gpipe_core.schedules.schedule.v_placement`): stage s < K is direction
0's copy of chunk s (on device s), stage K+j is direction 1's copy of chunk j
(on device K-1-j). Micro-batches are numbered 0..M/2-1 in each direction, so
every (micro-batch, stage) pair runs once, as in any V table. What differs is
one cut: a micro-batch never crosses from stage K-1 to stage K. Stages 0 and K
take the inputs, stages K-1 and 2K-1 compute the losses, and
:func:`dependency_map` says so; with it, the one walker of
:mod:`gpipe_core.schedules.schedule` places and times the orders as for every schedule.

The order of device r, from DeepSeek's reference (deepseek-ai/DualPipe,
``dualpipe.py``): with d = min(r, K-1-r), it is DualPipeV's order for
K/2 devices, M/2 micro-batches and device d (the eight steps of
:mod:`gpipe_core.schedules.dualpipe`), where "phase 0" (the V's down stage) is the
direction that enters on the device's own side (direction 0 for the first
half of the devices, direction 1 for the second, their ``phase ^=
is_in_second_half``) and "phase 1" the other. Each half of the devices then
plays DualPipeV for one direction's first half and the other direction's
second half, mirrored: direction 1 is direction 0 seen from the other end.

Conditions (DeepSeek asserts them): K even, M even and M >= 2K, i.e. each
direction's M/2 >= K, DualPipeV's M >= 2K on K/2 devices.

Closed forms under unit costs (F = I = W = 1, B = 2 per stage copy, a stage
being 1/K of the model; an overlapped F&B costs F + B = 3), checked for K =
2..10 and M = 2K..5K in tests/test_dualpipe.py:

* step 3M + K - 2: each device works 3M (M/2 micro-batches on each of two
  chunks, F + B = 3 each) and idles K - 2, which is DeepSeek's bubble
  (PP/2 - 1)(F&B + B - 3W) with PP = K: (K/2 - 1)(3 + 2 - 3), 1F1B's 3(K-1) cut
  by two thirds;
* peak activations held K + 1 stage copies on every device: DeepSeek's
  "PP + 1" against 1F1B's PP on its first device;
* parameters: 2/K of the model per device, twice 1F1B's 1/K; the two copies of
  a chunk each get their direction's gradients, and the step's gradient is
  their sum (DeepSeek all-reduces them).

Running it: ``GPipe(schedule="dualpipe")`` hands each step to a
:class:`~gpipe_core.engine.two_way.TwoWayPipe`, which walks this table with the
engine's stages, inline or one thread per device, and equals the sequential
model (tests/test_dualpipe.py, tests/test_dualpipe_gpipe.py). The engine's own
runtime, validator and simulator take one route 0..S-1 for every micro-batch
and one module per stage, so the table is registered apart from the one-way
schedules (:data:`gpipe_core.schedules.zoo.TWO_WAY`), and :func:`measure` times it.
torch's runtime cannot run it either: a ``PipelineStage`` always sends to
stage s+1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..engine.trace import Trace
from .actions import KINDS, Action, Cell, Overlap, actions_of, flatten, overlap_error
from .dualpipe import device_order
from .schedule import Schedule, ScheduleError, check_sizes, device_orders, v_placement, walk


def check_dualpipe_sizes(M: int, K: int) -> None:
    """DeepSeek's conditions on M and K, each named with a size that works."""
    check_sizes(M, K)
    if K % 2:
        raise ValueError(f"DualPipe needs an even number of devices K (got K={K}): use K={K + 1}, or 'dualpipev', "
                         "which runs the same order on any K")
    if M % 2 or M < 2 * K:
        raise ValueError(f"DualPipe needs M even and M >= 2K, half the micro-batches from each end (got M={M}, "
                         f"K={K}): use M={max(2 * K, M + M % 2)}")


def dependency_map(actions: Iterable[Action], K: int) -> dict[Action, tuple[Action, ...]]:
    """What each action waits for in a two-way table: the V's chain, cut between stages K-1 and K."""
    present = set(actions)
    deps: dict[Action, tuple[Action, ...]] = {}
    for a in present:
        i, s = a.microbatch, a.stage
        if a.kind == "F":
            deps[a] = () if s in (0, K) else (Action("F", i, s - 1),)
        elif a.kind == "W":
            deps[a] = (Action("I", i, s),)
        else:
            grad: tuple[Action, ...] = ()
            if s not in (K - 1, 2 * K - 1):
                downstream = Action("I", i, s + 1)
                grad = (downstream if downstream in present else Action("B", i, s + 1),)
            deps[a] = (Action("F", i, s), *grad)
    return deps


def dualpipe_schedule(M: int, K: int) -> Schedule:
    """DualPipe for M micro-batches (M/2 from each end) on K devices: 2K stage copies (module docstring)."""
    check_dualpipe_sizes(M, K)
    half = K // 2
    orders = []
    for r in range(K):
        d = min(r, K - 1 - r)
        down, up = d, K - 1 - d  # V stages of DualPipeV on K/2 devices: depth d and depth K-1-d
        if r < half:   # phase 0 is direction 0 (stage = its depth), phase 1 direction 1 (stage K + its depth)
            to = {down: down, up: K + up}
        else:          # the second half: phase 0 is direction 1, phase 1 direction 0
            to = {down: K + down, up: up}
        orders.append([_moved(cell, to) for cell in device_order(M // 2, half, d)])
    return _ticks(orders, K)


def _moved(cell: Cell, to: dict[int, int]) -> Cell:
    """A DualPipeV cell with its stages renumbered into the two-way table."""
    if isinstance(cell, Overlap):
        return Overlap(_moved(cell.forward, to), _moved(cell.backward, to))  # type: ignore[arg-type]
    return Action(cell.kind, cell.microbatch, to[cell.stage])


def _ticks(orders: Sequence[Sequence[Cell]], K: int) -> Schedule:
    """Place per-device orders on the earliest ticks the cut V's dependencies allow (one tick per cell)."""
    times = walk(orders, dependency_map(flatten(orders), K), lambda c: 1.0)
    table: Schedule = [[] for _ in range(int(max(end for _, end in times.values())))]
    for cell in (c for order in orders for c in order):
        table[int(times[actions_of(cell)[0]][0])].append(cell)
    for tick in table:
        tick.sort(key=lambda c: c.stage)
    return table


def check_dualpipe(table: Sequence[Sequence[Cell]], M: int, K: int) -> Schedule:
    """Validate a two-way table: every action once (B, or I and W), one cell per device per tick, every
    dependency at an earlier tick; raises :class:`~gpipe_core.schedules.schedule.ScheduleError` naming the action."""
    check_dualpipe_sizes(M, K)
    placement, seen = v_placement(K), {}
    for t, tick in enumerate(table):
        busy: dict[int, Cell] = {}
        for cell in tick:
            for a in actions_of(cell):
                if a.kind not in KINDS or not (0 <= a.microbatch < M // 2 and 0 <= a.stage < 2 * K):
                    raise ScheduleError(f"{a} at tick {t} is out of range: micro-batches 0..{M // 2 - 1} per "
                                        f"direction, stage copies 0..{2 * K - 1}")
            why = overlap_error(cell, placement) if isinstance(cell, Overlap) else None
            if why is not None:
                raise ScheduleError(f"{why} (tick {t})")
            device = placement[cell.stage]
            if device in busy:
                raise ScheduleError(f"device {device} runs both {busy[device]} and {cell} at tick {t}")
            busy[device] = cell
            for a in actions_of(cell):
                if a in seen:
                    raise ScheduleError(f"{a} is repeated (ticks {seen[a]} and {t}): run it once")
                seen[a] = t
    for i in range(M // 2):
        for s in range(2 * K):
            has = {k: Action(k, i, s) in seen for k in KINDS}  # type: ignore[arg-type]
            if not has["F"] or not (has["B"] != (has["I"] and has["W"])) or (has["I"] != has["W"]):
                raise ScheduleError(f"micro-batch {i} on stage copy {s} needs one F and one backward (B, or I and "
                                    f"W): it has {[k for k in KINDS if has[k]]}")
    for a, deps in dependency_map(seen, K).items():
        for w in deps:
            if seen[w] >= seen[a]:
                raise ScheduleError(f"{a} runs at tick {seen[a]} but depends on {w}, which runs at tick {seen[w]}")
    return [list(tick) for tick in table]


@dataclass(frozen=True)
class TwoWayRun:
    """A two-way table timed by the walker: its step and the peak stage copies each device holds."""

    step: float
    held: list[int]


def _timed(table: Sequence[Sequence[Cell]], K: int, cost: dict[str, float], overlap: float | None,
           ) -> tuple[list[list[Cell]], dict[Action, tuple[float, float]]]:
    """Each device's order and every action's (start, end): an F&B cell's actions share the cell's span."""
    def duration(cell: Cell) -> float:
        if isinstance(cell, Overlap):
            return (cost["F"] + cost[cell.backward.kind]) if overlap is None else overlap
        return cost[cell.kind]

    orders = device_orders(table, v_placement(K))
    return orders, walk(orders, dependency_map(flatten(orders), K), duration)


def measure(table: Sequence[Sequence[Cell]], K: int, f: float = 1, b: float = 2, i: float = 1, w: float = 1,
            overlap: float | None = None) -> TwoWayRun:
    """Time the table with per-stage costs (an F&B cell takes ``overlap``, else f + b) and count activations
    held (from a forward's start to the end of the B or W that frees it; frees before allocations)."""
    orders, when = _timed(table, K, {"F": f, "B": b, "I": i, "W": w}, overlap)
    step = max(end for _, end in when.values()) - min(start for start, _ in when.values())
    held = []
    for order in orders:
        events = []
        for a in flatten([order]):
            if a.kind == "F":
                events.append((when[a][0], 1, 1))
            elif a.kind in "BW":
                events.append((when[a][1], 0, -1))
        level = peak = 0
        for _, _, delta in sorted(events):
            level += delta
            peak = max(peak, level)
        held.append(peak)
    return TwoWayRun(step, held)


def timeline(table: Sequence[Sequence[Cell]], K: int, f: float = 1, b: float = 2, i: float = 1, w: float = 1,
             overlap: float | None = None) -> Trace:
    """The timed table as a :class:`~gpipe_core.engine.trace.Trace` (rows: devices; stages: the 2K copies; micro-batches
    numbered in the batch, direction 1's from M/2), an F&B cell drawn as its forward then its backward, each
    its share of the cell in proportion to its own cost, as :func:`gpipe_core.sim.simulate.simulate` draws them."""
    cost = {"F": f, "B": b, "I": i, "W": w}
    orders, when = _timed(table, K, cost, overlap)
    half = 1 + max(a.microbatch for a in when)
    trace = Trace(K, placement=v_placement(K))
    for cell in (c for order in orders for c in order):
        start, end = when[actions_of(cell)[0]]
        parts, span = actions_of(cell), end - start
        total = sum(cost[a.kind] for a in parts) or 1.0
        for a in parts:
            share = span * cost[a.kind] / total
            trace.add(a.stage, (a.stage // K) * half + a.microbatch, a.kind, start, start + share)
            start += share
    trace.events.sort(key=lambda e: e.start)
    return trace

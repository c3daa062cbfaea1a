"""Schedules as data.

A pipeline step is a table: rows are devices, columns are clock ticks, and
each cell holds at most one :class:`Action`. Here a schedule is that table,
stored tick by tick: ``schedule[t]`` is the list of actions that run at tick
``t``. Writing the schedule as plain data is what lets a learner build one,
the validator check it, the runtime execute it on real workers, the simulator
time it and the trace draw it in wall-clock time: they all speak the same list
of lists.

Action kinds: ``F`` (forward), ``B`` (whole backward), and the split backward
of the zero-bubble schedules: ``I`` (the gradient with respect to the stage's
input, which the stage upstream waits for) and ``W`` (the weight gradients,
which nobody waits for and so can fill a bubble). ``B`` is ``I`` and ``W``
together. A cell may also be an overlapped F&B (:class:`~gpipe_core.schedules.actions.Overlap`,
DualPipe's): a forward and a backward of one device issued together, one cell
of the table (see :mod:`gpipe_core.schedules.actions`).

Stages and devices: a model cut into S stages runs on K devices. Usually
S = K and stage s lives on device s. With virtual stages (interleaved 1F1B,
the V-shaped zero-bubble schedule) each device holds V = S / K stages; a
``placement`` list says which device each stage is on, and a device still
runs one action per tick.

This module holds the table's grammar: actions, what each one waits for,
placements, per-device orders and the one walker that places orders in time
(used for ticks here and for seconds by :mod:`gpipe_core.sim.simulate`), plus the
two classic schedules. It imports no other schedule module: checking and
printing a table live in :mod:`gpipe_core.schedules.validation`, and the one registry of
named schedules (these two included) in :mod:`gpipe_core.schedules.zoo`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ..engine.common import is_positive_int
from .actions import KINDS, Action, Cell, Kind, Overlap, actions_of, flatten

Schedule = list[list[Cell]]
ScheduleLike = str | Sequence[Sequence[Cell]]


class ScheduleError(ValueError):
    """A schedule that cannot run, or does not run at the ticks it claims."""


# -- placements -------------------------------------------------------------------------------

def loop_placement(K: int, V: int) -> list[int]:
    """Stage s on device s mod K: V stages per device, visited in loops (interleaved 1F1B)."""
    return [s % K for s in range(K * V)]


def v_placement(K: int) -> list[int]:
    """Two stages per device in a V: down 0..K-1, then back up K-1..0 (the ZBV schedule)."""
    return list(range(K)) + list(reversed(range(K)))


def check_placement(placement: Sequence[int] | None, S: int) -> list[int]:
    """The device of each of the S stages; None means stage s on device s."""
    if placement is None:
        return list(range(S))
    placement = [int(d) for d in placement]
    if len(placement) != S:
        raise ScheduleError(f"placement {placement} names {len(placement)} stages but the model has {S}: "
                            "give one device index per stage")
    K = max(placement) + 1
    if min(placement) < 0 or set(placement) != set(range(K)):
        raise ScheduleError(f"placement {placement} must use every device 0..{K - 1} and nothing else")
    return placement


# -- what waits for what ----------------------------------------------------------------------

def dependencies(action: Action, S: int) -> list[Action]:
    """What ``action`` waits for in a table whose backwards are whole (B) or split the same way.

    F(i) on stage s needs stage s-1's output of micro-batch i. B(i) or I(i) on
    stage s needs its own F(i) and, unless s is the last stage, the input
    gradient of stage s+1 (of the same kind). W(i) needs I(i) of its stage.
    For a table that mixes B and I, use :func:`dependency_map`.
    """
    i, s = action.microbatch, action.stage
    if action.kind == "F":
        return [Action("F", i, s - 1)] if s > 0 else []
    if action.kind == "W":
        return [Action("I", i, s)]
    deps = [Action("F", i, s)]
    if s < S - 1:
        deps.append(Action(action.kind, i, s + 1))
    return deps


def dependency_map(actions: Iterable[Action], S: int) -> dict[Action, tuple[Action, ...]]:
    """What each action of a table waits for; the gradient from stage s+1 comes from its B or its I."""
    present = set(actions)
    deps: dict[Action, tuple[Action, ...]] = {}
    for a in present:
        i, s = a.microbatch, a.stage
        if a.kind == "F":
            deps[a] = (Action("F", i, s - 1),) if s > 0 else ()
        elif a.kind == "W":
            deps[a] = (Action("I", i, s),)
        else:
            grad = ()
            if s < S - 1:
                downstream = Action("I", i, s + 1)
                grad = (downstream if downstream in present else Action("B", i, s + 1),)
            deps[a] = (Action("F", i, s), *grad)
    return deps


# -- orders and the walker --------------------------------------------------------------------

def stage_orders(schedule: Sequence[Sequence[Cell]], S: int) -> list[list[Action]]:
    """Each stage's actions in tick order (an overlapped F&B gives one action to each of its stages)."""
    orders: list[list[Action]] = [[] for _ in range(S)]
    for action in flatten(schedule):
        orders[action.stage].append(action)
    return orders


def device_orders(schedule: Sequence[Sequence[Cell]], placement: Sequence[int]) -> list[list[Cell]]:
    """Each device's cells in tick order: what one device's worker executes."""
    orders: list[list[Cell]] = [[] for _ in range(max(placement) + 1)]
    for tick in schedule:
        for cell in tick:
            orders[placement[cell.stage]].append(cell)
    return orders


def walk(orders: Sequence[Sequence[Cell]], deps: dict[Action, tuple[Action, ...]],
         duration: Callable[[Cell], float], handoff: Callable[[Action, Action], float] | None = None,
         ) -> dict[Action, tuple[float, float]]:
    """Start and end of every action when each device runs its ``orders[d]`` in order.

    An action starts when its device is free and each dependency has ended
    (plus ``handoff(dep, action)``, e.g. a transfer between devices). An
    overlapped F&B starts when both halves could and ends, for both, after
    ``duration`` of the cell. Raises :class:`ScheduleError` naming what each
    stuck device waits for when the orders deadlock.
    """
    times: dict[Action, tuple[float, float]] = {}
    heads, free = [0] * len(orders), [0.0] * len(orders)
    total = sum(len(actions_of(c)) for o in orders for c in o)
    while len(times) < total:
        progressed = False
        for d, order in enumerate(orders):
            while heads[d] < len(order):
                cell = order[heads[d]]
                waits = [(w, a) for a in actions_of(cell) for w in deps.get(a, ())]
                if any(w not in times for w, _ in waits):
                    break
                start = max([free[d]] + [times[w][1] + (handoff(w, a) if handoff else 0.0) for w, a in waits])
                end = start + duration(cell)
                for a in actions_of(cell):
                    times[a] = (start, end)
                free[d] = end
                heads[d] += 1
                progressed = True
        if not progressed:
            stuck = [order[heads[d]] for d, order in enumerate(orders) if heads[d] < len(order)]
            missing = {c: [str(w) for a in actions_of(c) for w in deps.get(a, ()) if w not in times] for c in stuck}
            detail = "; ".join(f"{c} waits for {', '.join(ws)}" for c, ws in missing.items())
            raise ScheduleError(f"deadlock: no device can make progress ({detail}). Reorder the actions so "
                                "that every action comes after the ones it depends on")
    return times


def ticks_from_orders(orders: Sequence[Sequence[Cell]], placement: Sequence[int] | None = None) -> Schedule:
    """Place per-device orders on the earliest ticks their dependencies allow (one tick per action).

    ``orders[d]`` is device d's list of actions; without a placement, device d
    is stage d. Raises :class:`ScheduleError` naming the stuck actions if the
    orders deadlock.
    """
    return _place(orders, placement)


def _place(orders: Sequence[Sequence[Cell]], placement: Sequence[int] | None = None) -> Schedule:
    """The body of :func:`ticks_from_orders`, which the engine itself calls."""
    actions = list(flatten(orders))
    S = 1 + max((a.stage for a in actions), default=-1)
    if placement is not None:
        S = max(S, len(placement))
    times = walk(orders, dependency_map(actions, S), lambda c: 1.0)
    table: Schedule = [[] for _ in range(int(max((end for _, end in times.values()), default=0)))]
    for cell in (c for order in orders for c in order):
        table[int(times[actions_of(cell)[0]][0])].append(cell)
    for tick in table:
        tick.sort(key=lambda c: c.stage)
    return table


# -- the two classic schedules ----------------------------------------------------------------

def gpipe_schedule(M: int, K: int) -> Schedule:
    """Fill-drain: all M forwards, then all M backwards in reverse order."""
    check_sizes(M, K)
    orders = [[Action("F", i, j) for i in range(M)] + [Action("B", i, j) for i in reversed(range(M))]
              for j in range(K)]
    return ticks_from_orders(orders)


def one_f_one_b_schedule(M: int, K: int) -> Schedule:
    """1F1B: stage j runs K-1-j warm-up forwards, then alternates one F and one B.

    Same bubble as GPipe, but a stage holds at most K-j micro-batches' activations
    instead of M.
    """
    check_sizes(M, K)
    orders = []
    for j in range(K):
        warmup = min(K - 1 - j, M)
        order = [Action("F", i, j) for i in range(warmup)]
        for i in range(M - warmup):
            order += [Action("F", warmup + i, j), Action("B", i, j)]
        order += [Action("B", i, j) for i in range(M - warmup, M)]
        orders.append(order)
    return ticks_from_orders(orders)


def check_sizes(M: int, K: int) -> None:
    """Raise a clear error unless M and K are positive integers (:func:`~gpipe_core.engine.common.is_positive_int`)."""
    if not (is_positive_int(M) and is_positive_int(K)):
        raise ValueError(f"M and K must be positive integers (got M={M!r}, K={K!r})")


_check = check_sizes


__all__ = [
    "KINDS", "Action", "Cell", "Kind", "Overlap", "Schedule", "ScheduleError", "ScheduleLike",
    "actions_of", "check_placement", "check_sizes", "dependencies", "dependency_map", "device_orders", "flatten",
    "gpipe_schedule", "loop_placement", "one_f_one_b_schedule", "stage_orders", "ticks_from_orders", "v_placement",
    "walk",
]

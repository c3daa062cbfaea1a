"""Check a table before anything runs it, and print it so a person can read it.

A learner's table, a built-in one and one imported from PyTorch all pass
through :func:`validate` before the engine runs them (:func:`resolve` first
looks a name up in the registry, :data:`gpipe_core.schedules.zoo.BUILTINS`): every action exactly
once, one action per device per tick, a backward that is either B or I and W,
no deadlock, and every dependency at an earlier tick. The error names the
offending action and shows the table with that cell marked, because a
schedule bug is much easier to see than to describe. An overlapped F&B cell
(:class:`~gpipe_core.schedules.actions.Overlap`) counts as one cell of its device and
as two actions, each checked like any other.
"""

from __future__ import annotations

from collections.abc import Sequence

from .actions import Cell, Overlap, actions_of, flatten, label, overlap_error
from .schedule import (
    KINDS,
    Action,
    Schedule,
    ScheduleError,
    ScheduleLike,
    check_placement,
    check_sizes,
    dependency_map,
    device_orders,
    walk,
)
from .zoo import Builtin, lookup


def _stages(K: int, placement: Sequence[int] | None) -> tuple[int, list[int]]:
    """(S, placement): K devices, or with a placement its len(placement) stages (K may also name S)."""
    if placement is None:
        return K, list(range(K))
    placement = check_placement(placement, len(placement))
    devices = max(placement) + 1
    if K not in (devices, len(placement)):
        raise ScheduleError(f"K={K} but the placement {placement} uses {devices} devices: make them agree")
    return len(placement), placement


def validate(schedule: Sequence[Sequence[Cell]], M: int, K: int,
             placement: Sequence[int] | None = None) -> Schedule:
    """Check that ``schedule`` is a correct table for M micro-batches on K devices; return it as lists.

    Without ``placement`` there are K stages, stage s on device s. With it,
    stage s runs on device ``placement[s]`` (virtual stages). Rejects, naming the
    offending action: a cell that is not an Action (or an Overlap of an F and
    a B or I on one device), a kind other than F, B, I or W, an action out of
    range, two cells on one device in one tick, a missing or repeated action, a
    backward that is both B and I/W, orders that deadlock, and a dependency
    that does not run at an earlier tick (the two halves of an overlap share
    their tick, so neither may wait for the other).
    """
    check_sizes(M, K)
    S, placement = _stages(K, placement)
    if isinstance(schedule, str) or not isinstance(schedule, Sequence):
        raise ScheduleError("a schedule is a list of ticks, each a list of Action(kind, microbatch, stage)")
    table: Schedule = []
    seen: dict[Action, int] = {}
    for t, tick in enumerate(schedule):
        if isinstance(tick, Action) or not isinstance(tick, Sequence):
            raise ScheduleError(f"tick {t} is {tick!r}: each tick must be a list of actions")
        busy: dict[int, Cell] = {}
        for cell in tick:
            _check_cell(cell, t, M, S, placement)
            device = placement[cell.stage]
            if device in busy:
                where = f"stage {device}" if S == K else f"device {device}"
                raise _error(f"{where} runs both {busy[device]} and {cell} at tick {t}: "
                             f"a {'stage' if S == K else 'device'} does one action per tick", table, tick, cell,
                             S, placement)
            busy[device] = cell
            for action in actions_of(cell):
                if action in seen:
                    raise _error(f"{action} is repeated (ticks {seen[action]} and {t}): run it once",
                                 table, tick, cell, S, placement)
                seen[action] = t
        table.append(list(tick))
    _check_complete(seen, M, S, table, placement)
    deps = dependency_map(seen, S)
    walk(device_orders(table, placement), deps, lambda a: 1.0)  # raises on deadlock
    for action, t in sorted(seen.items(), key=lambda kv: kv[1]):
        for dep in deps[action]:
            if seen[dep] >= t:
                raise _error(f"{action} runs at tick {t} but depends on {dep}, which runs at tick {seen[dep]}: "
                             f"move {action} to tick {seen[dep] + 1} or later", table, None, action, S, placement)
    return table


def _check_cell(cell: object, t: int, M: int, S: int, placement: list[int]) -> None:
    if isinstance(cell, Overlap):
        why = overlap_error(cell, placement)
        if why is not None:
            raise ScheduleError(f"{why} (tick {t})")
        for action in cell.actions:
            _check_cell(action, t, M, S, placement)
        return
    if not isinstance(cell, Action):
        raise ScheduleError(f"tick {t} holds {cell!r}, which is not an Action (or an Overlap of two)")
    action = cell
    if action.kind not in KINDS:
        raise ScheduleError(f"{action} at tick {t}: kind must be one of 'F', 'B', 'I', 'W'")
    if not (0 <= action.microbatch < M and 0 <= action.stage < S):
        raise ScheduleError(f"{action} at tick {t} is out of range: micro-batches are 0..{M - 1}, "
                            f"stages 0..{S - 1}")


def _check_complete(seen: dict[Action, int], M: int, S: int, table: Schedule, placement: list[int]) -> None:
    for s in range(S):
        for i in range(M):
            has = {k: Action(k, i, s) in seen for k in KINDS}  # type: ignore[arg-type]
            if not has["F"]:
                raise _error(f"{Action('F', i, s)} is missing: every action must run once", table, None, None,
                             S, placement)
            if has["B"] and (has["I"] or has["W"]):
                raise _error(f"{Action('B', i, s)} and {'I' if has['I'] else 'W'}{i}@stage{s} both appear: a "
                             "backward is either B or its two halves I and W, not both", table, None,
                             Action("B", i, s), S, placement)
            if not has["B"] and has["I"] != has["W"]:
                missing = Action("W" if has["I"] else "I", i, s)
                raise _error(f"{missing} is missing: a split backward needs both I and W", table, None, None,
                             S, placement)
            if not (has["B"] or has["I"]):
                raise _error(f"{Action('B', i, s)} is missing: every action must run once (B, or I and W)",
                             table, None, None, S, placement)


def _error(message: str, table: Schedule, partial: Sequence[Cell] | None, mark: Cell | None, S: int,
           placement: list[int]) -> ScheduleError:
    """A ScheduleError whose text ends with the table so far, the offending cell in brackets."""
    shown = table + ([list(partial)] if partial is not None else [])
    if mark is not None and partial is not None and mark not in partial:
        shown[-1] = [*shown[-1], mark]
    if mark is not None and partial is None:  # an action inside an overlap marks its cell
        mark = next((c for tick in shown for c in tick if mark in actions_of(c)), mark)
    if not shown or sum(len(t) for t in shown) > 400:
        return ScheduleError(message)
    return ScheduleError(f"{message}\n{render(shown, S, placement, mark=mark)}")


def render(schedule: Sequence[Sequence[Cell]], K: int | None = None, placement: Sequence[int] | None = None,
           mark: Cell | None = None) -> str:
    """The table as text: one row per device, one column per tick, '.' when idle.

    Cells read ``F3`` (kind and micro-batch); with virtual stages they add the
    stage, ``F3:5``; an overlapped F&B reads ``F3&B1``. ``mark`` is drawn in
    brackets. Two cells that collide on one device in one tick are shown
    joined by '+'.
    """
    if K is None:
        K = 1 + max((a.stage for a in flatten(schedule)), default=0)
    if placement is None:
        placement = list(range(K))
    virtual = len(placement) != max(placement) + 1
    rows = [["."] * len(schedule) for _ in range(max(placement) + 1)]
    for t, tick in enumerate(schedule):
        for a in tick:
            cell = label(a, virtual)
            if a == mark:
                cell = f"[{cell}]"
            row = rows[placement[a.stage]] if a.stage < len(placement) else rows[-1]
            row[t] = cell if row[t] == "." else f"{row[t]}+{cell}"
    width = max([2, len(str(len(schedule) - 1))] + [len(c) for row in rows for c in row])
    name = "device" if virtual else "stage"
    head = max(8, len(f"{name} {len(rows) - 1}:"))
    lines = ["tick:".ljust(head) + " " + "   ".join(str(t).rjust(width) for t in range(len(schedule)))]
    for d, row in enumerate(rows):
        lines.append(f"{name} {d}:".ljust(head) + " " + "   ".join(c.rjust(width) for c in row))
    return "\n".join(line.rstrip() for line in lines)


def resolve(schedule: ScheduleLike | Builtin, M: int, K: int, placement: Sequence[int] | None = None) -> Schedule:
    """A schedule (a name or an entry of :data:`~gpipe_core.schedules.zoo.BUILTINS`, or a table) as a checked table."""
    if isinstance(schedule, str):
        schedule = lookup(schedule)
    if isinstance(schedule, Builtin) and schedule.two_way:
        raise ValueError(f"{schedule.name!r} has two directions: GPipe(schedule={schedule.name!r}) runs it, "
                         "gpipe_core.schedules.bidirectional.check_dualpipe checks its table")
    table = schedule.build(M, K) if isinstance(schedule, Builtin) else schedule
    return validate(table, M, K, placement)

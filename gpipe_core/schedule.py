"""Schedules as data.

A pipeline step is a table: rows are the K stages, columns are clock ticks, and
each cell holds at most one :class:`Action` (forward or backward of one
micro-batch on one stage). Here a schedule is that table, stored tick by tick:
``schedule[t]`` is the list of actions that run at tick ``t``.

Writing the schedule as plain data is what lets a learner build one, the
validator check it, the runtime execute it on real workers and the trace draw
it in wall-clock time: they all speak the same list of lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal["F", "B"]


@dataclass(frozen=True, order=True)
class Action:
    """Forward (``"F"``) or backward (``"B"``) of one micro-batch on one stage."""

    kind: Kind
    microbatch: int
    stage: int

    def __str__(self) -> str:
        return f"{self.kind}{self.microbatch}@stage{self.stage}"


Schedule = list[list[Action]]
ScheduleLike = str | Sequence[Sequence[Action]]


class ScheduleError(ValueError):
    """A schedule that cannot run, or does not run at the ticks it claims."""


def dependencies(action: Action, K: int) -> list[Action]:
    """The actions that must finish before ``action`` can start.

    F(i) on stage j needs stage j-1's output of micro-batch i. B(i) on stage j
    needs its own F(i) and, unless j is the last stage, the gradient B(i) of
    stage j+1 sends back.
    """
    i, j = action.microbatch, action.stage
    if action.kind == "F":
        return [Action("F", i, j - 1)] if j > 0 else []
    deps = [Action("F", i, j)]
    if j < K - 1:
        deps.append(Action("B", i, j + 1))
    return deps


def stage_orders(schedule: Sequence[Sequence[Action]], K: int) -> list[list[Action]]:
    """Each stage's actions in tick order: what each worker executes."""
    orders: list[list[Action]] = [[] for _ in range(K)]
    for tick in schedule:
        for action in tick:
            orders[action.stage].append(action)
    return orders


def ticks_from_orders(orders: Sequence[Sequence[Action]]) -> Schedule:
    """Place per-stage orders on the earliest ticks their dependencies allow.

    Every action takes one tick. Raises :class:`ScheduleError` naming the stuck
    actions if the orders deadlock (each stage waits for another).
    """
    return _place(orders)


def _place(orders: Sequence[Sequence[Action]]) -> Schedule:
    """The body of :func:`ticks_from_orders`, which the engine itself calls.

    Kept separate so that grading can disable the public function (learners
    write their own) while validation and the inline executor keep working.
    """
    K = len(orders)
    done: dict[Action, int] = {}
    heads = [0] * K
    free = [0] * K
    total = sum(len(o) for o in orders)
    while len(done) < total:
        progressed = False
        for j in range(K):
            while heads[j] < len(orders[j]):
                action = orders[j][heads[j]]
                deps = dependencies(action, K)
                if any(d not in done for d in deps):
                    break
                tick = max([free[j]] + [done[d] + 1 for d in deps])
                done[action] = tick
                free[j] = tick + 1
                heads[j] += 1
                progressed = True
        if not progressed:
            stuck = [orders[j][heads[j]] for j in range(K) if heads[j] < len(orders[j])]
            waits = "; ".join(
                f"{a} waits for {', '.join(str(d) for d in dependencies(a, K) if d not in done)}"
                for a in stuck
            )
            raise ScheduleError(
                f"deadlock: no stage can make progress ({waits}). Reorder the stages' actions "
                "so that every action comes after the ones it depends on"
            )
    table: Schedule = [[] for _ in range(max(done.values(), default=-1) + 1)]
    for action, tick in done.items():
        table[tick].append(action)
    for tick in table:
        tick.sort(key=lambda a: a.stage)
    return table


def gpipe_schedule(M: int, K: int) -> Schedule:
    """Fill-drain: all M forwards, then all M backwards in reverse order."""
    _check(M, K)
    orders = [
        [Action("F", i, j) for i in range(M)] + [Action("B", i, j) for i in reversed(range(M))]
        for j in range(K)
    ]
    return ticks_from_orders(orders)


def one_f_one_b_schedule(M: int, K: int) -> Schedule:
    """1F1B: stage j runs K-1-j warm-up forwards, then alternates one F and one B.

    Same bubble as GPipe, but a stage holds at most K-j micro-batches' activations
    instead of M.
    """
    _check(M, K)
    orders = []
    for j in range(K):
        warmup = min(K - 1 - j, M)
        order = [Action("F", i, j) for i in range(warmup)]
        for i in range(M - warmup):
            order += [Action("F", warmup + i, j), Action("B", i, j)]
        order += [Action("B", i, j) for i in range(M - warmup, M)]
        orders.append(order)
    return ticks_from_orders(orders)


SCHEDULES = {"gpipe": gpipe_schedule, "1f1b": one_f_one_b_schedule}


def _check(M: int, K: int) -> None:
    if not isinstance(M, int) or not isinstance(K, int) or M < 1 or K < 1:
        raise ValueError(f"M and K must be positive integers (got M={M!r}, K={K!r})")


def validate(schedule: Sequence[Sequence[Action]], M: int, K: int) -> Schedule:
    """Check that ``schedule`` is a correct table for M micro-batches on K stages.

    Rejects, naming the offending action: a cell that is not an Action, an
    action out of range, two actions on one stage in one tick, a missing or
    repeated action, orders that deadlock, and a dependency that does not run
    at an earlier tick. Returns the schedule as a list of lists.
    """
    _check(M, K)
    if isinstance(schedule, str) or not isinstance(schedule, Sequence):
        raise ScheduleError("a schedule is a list of ticks, each a list of Action(kind, microbatch, stage)")
    table: Schedule = []
    seen: dict[Action, int] = {}
    for t, tick in enumerate(schedule):
        if isinstance(tick, Action) or not isinstance(tick, Sequence):
            raise ScheduleError(f"tick {t} is {tick!r}: each tick must be a list of actions")
        busy: dict[int, Action] = {}
        for action in tick:
            if not isinstance(action, Action):
                raise ScheduleError(f"tick {t} holds {action!r}, which is not an Action")
            if action.kind not in ("F", "B"):
                raise ScheduleError(f"{action} at tick {t}: kind must be 'F' or 'B'")
            if not (0 <= action.microbatch < M and 0 <= action.stage < K):
                raise ScheduleError(
                    f"{action} at tick {t} is out of range: micro-batches are 0..{M - 1}, "
                    f"stages 0..{K - 1}"
                )
            if action.stage in busy:
                raise ScheduleError(
                    f"stage {action.stage} runs both {busy[action.stage]} and {action} at tick {t}: "
                    "a stage does one action per tick"
                )
            if action in seen:
                raise ScheduleError(f"{action} is repeated (ticks {seen[action]} and {t}): run it once")
            busy[action.stage] = action
            seen[action] = t
        table.append(list(tick))
    for j in range(K):
        for kind in ("F", "B"):
            for i in range(M):
                if Action(kind, i, j) not in seen:  # type: ignore[arg-type]
                    raise ScheduleError(f"{Action(kind, i, j)} is missing: every action must run once")  # type: ignore[arg-type]
    _place(stage_orders(table, K))  # raises on deadlock
    for action, t in sorted(seen.items(), key=lambda kv: kv[1]):
        for dep in dependencies(action, K):
            if seen[dep] >= t:
                raise ScheduleError(
                    f"{action} runs at tick {t} but depends on {dep}, which runs at tick {seen[dep]}: "
                    f"move {action} to tick {seen[dep] + 1} or later"
                )
    return table


def resolve(schedule: ScheduleLike, M: int, K: int) -> Schedule:
    """Turn a schedule name ('gpipe', '1f1b') or a table into a validated table."""
    if isinstance(schedule, str):
        try:
            return SCHEDULES[schedule.lower()](M, K)
        except KeyError:
            raise ValueError(
                f"unknown schedule {schedule!r}: use one of {sorted(SCHEDULES)} or pass a table"
            ) from None
    return validate(schedule, M, K)


def render(schedule: Sequence[Sequence[Action]], K: int | None = None) -> str:
    """The table as text: one row per stage, one column per tick, '.' when idle."""
    if K is None:
        K = 1 + max((a.stage for tick in schedule for a in tick), default=0)
    rows = [["."] * len(schedule) for _ in range(K)]
    for t, tick in enumerate(schedule):
        for action in tick:
            rows[action.stage][t] = f"{action.kind}{action.microbatch}"
    width = max([2] + [len(str(len(schedule) - 1))] + [len(c) for row in rows for c in row])
    lines = [("tick:".ljust(8) + " " + "   ".join(str(t).rjust(width) for t in range(len(schedule))))]
    for j, row in enumerate(rows):
        lines.append(f"stage {j}:".ljust(8) + " " + "   ".join(c.rjust(width) for c in row))
    return "\n".join(line.rstrip() for line in lines)

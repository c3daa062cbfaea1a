"""Build a table one tick at a time: each device runs the head of its fixed queue, then whatever a rule picks.

Some schedules are easiest to state as a rule applied tick by tick rather than
as fixed per-device orders: ZB-H2's "an input gradient if one is ready, else a
forward while fewer than 2K-1 are held, else the oldest deferred W", or ZBV's
cool-down after its fixed warm-up and steady triples. :func:`fill_ticks` is
that loop, shared by every such builder in :mod:`gpipe_core.schedules.zoo`, and
:class:`Counts` is what a rule reads: how many of each kind a stage has run.
Kept apart from the zoo, whose module holds the schedules and their registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .schedule import Action, Schedule, ScheduleError, dependencies

Chooser = Callable[[int, Callable[[Action], bool], "Counts"], "Action | None"]


class Counts:
    """Per stage, how many F, I and W have run: what a device's next action of each kind is."""

    def __init__(self, M: int, placement: Sequence[int]) -> None:
        self.M = M
        self.stages = [[s for s, dev in enumerate(placement) if dev == d] for d in range(max(placement) + 1)]
        self.done = {k: [0] * len(placement) for k in "FIW"}

    def next(self, kind: str, s: int) -> Action | None:
        """Stage s's next ``kind`` action (actions of one kind run in micro-batch order), None when all ran."""
        n = self.done[kind][s]
        return Action(kind, n, s) if n < self.M else None  # type: ignore[arg-type]

    def held(self, d: int) -> int:
        return sum(self.done["F"][s] - self.done["W"][s] for s in self.stages[d])

    def oldest_w(self, d: int) -> Action | None:
        pending = [(self.done["W"][s], -s) for s in self.stages[d] if self.done["W"][s] < self.done["I"][s]]
        return Action("W", min(pending)[0], -min(pending)[1]) if pending else None

    def ran(self, a: Action) -> None:
        self.done[a.kind][a.stage] += 1


def fill_ticks(M: int, placement: Sequence[int], queues: Sequence[Sequence[Action]], choose: Chooser) -> Schedule:
    """Fill ticks one at a time: each device runs the head of its queue when it is ready, and once the
    queue is empty whatever ``choose`` picks among ready actions. Every stage splits its backward (I, W),
    so :func:`~gpipe_core.schedules.schedule.dependencies` gives what each action waits for."""
    S, K = len(placement), max(placement) + 1
    counts = Counts(M, placement)
    tick_of: dict[Action, int] = {}
    heads, table = [0] * K, []
    while len(tick_of) < 3 * M * S:
        t = len(table)

        def ready(a: Action, t: int = t) -> bool:
            return a not in tick_of and all(tick_of.get(w, t) < t for w in dependencies(a, S))

        tick = []
        for d in range(K):
            if heads[d] < len(queues[d]):
                head = queues[d][heads[d]]
                pick = head if ready(head) else None
            else:
                pick = choose(d, ready, counts) if counts.stages[d] else None
            if pick is not None and ready(pick):
                tick.append(pick)
        if not tick:
            raise ScheduleError(f"the builder is stuck at tick {t} (M={M}, placement {list(placement)}): "
                                "no device has a ready action; this is a bug in the schedule's builder")
        for a in tick:
            tick_of[a] = t
            counts.ran(a)
            d = placement[a.stage]
            if heads[d] < len(queues[d]) and queues[d][heads[d]] == a:
                heads[d] += 1
        table.append(sorted(tick, key=lambda a: placement[a.stage]))
    return table


def v_drain(K: int) -> Chooser:
    """The drain of a V (ZBV, V-ZB): a ready input gradient, the down chunk's first, else the oldest pending W."""
    def choose(d: int, ready: Callable[[Action], bool], n: Counts) -> Action | None:
        for s in (d, 2 * K - 1 - d):
            a = n.next("I", s)
            if a is not None and ready(a):
                return a
        return n.oldest_w(d)

    return choose

"""Schedule puzzles: given K, M, per-action costs and a memory cap, how fast can a step be?

Assignment 07 asks learners to beat the bubble on a ladder of small pipelines.
A target typed by hand could be wrong in either direction (unreachable, or
beatable by a cleverer table), so every target here is computed: :func:`solve`
runs an exact A* search over every schedule the puzzle's rules allow and
returns the best step time together with device orders that reach it. The
search is exact because its lower bound never overestimates, so the first
finished schedule it takes off the queue is optimal: a target is *reachable*
(the orders come back with it) and *tight* (no rule-abiding table is faster).

The model is the course's: each device runs its actions one at a time in the
order of the table; an action starts when its device is free and the actions
it depends on have finished (no transfer cost); the step time is when the last
action ends. Memory is counted in *stage-micro-batches*: the activations of one
micro-batch in one stage (chunk). A device holds one from the start of that
micro-batch's forward on one of its stages until its weight gradient (W, or the
whole backward B) on that stage has finished. The peak depends only on each
device's order, not on the timing.

Puzzle rule (what makes exhaustive search small enough to be exact): on every
stage, forwards run in micro-batch order, and so do input-gradient passes
(I or B) and weight-gradient passes (W). Micro-batches are identical, so the
rule costs nothing a learner could exploit; tables that break it are rejected
with the offending action named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from .schedule import Action

Orders = list[list[Action]]


@dataclass(frozen=True)
class Puzzle:
    """One rung of the ladder. Costs are whole time units per action on one stage (chunk)."""

    name: str
    K: int
    M: int
    F: int = 1
    B: int = 2
    I: int = 1  # noqa: E741 (the paper's name for the input-gradient pass)
    W: int = 1
    split: bool = False
    cap: int | None = None
    V: int = 1
    shape: str = "loop"
    story: str = field(default="", compare=False)

    @property
    def S(self) -> int:
        """Number of stages (model chunks): K devices times V chunks each."""
        return self.K * self.V

    @property
    def placement(self) -> list[int]:
        """The device of each stage: round robin ('loop') or down and back up ('v')."""
        if self.shape == "v":
            if self.V != 2:
                raise ValueError(f"{self.name}: a V-shape needs V=2 chunks per device, got V={self.V}")
            return list(range(self.K)) + list(reversed(range(self.K)))
        return [s % self.K for s in range(self.S)]

    def cost(self, kind: str) -> int:
        return {"F": self.F, "B": self.B, "I": self.I, "W": self.W}[kind]

    @property
    def kinds(self) -> str:
        return "F, I, W (or B)" if self.split else "F, B"


@dataclass(frozen=True)
class Score:
    """What a table achieves on a puzzle: step time and each device's peak stage-micro-batches."""

    time: int
    peak: tuple[int, ...]


def _needs(a: Action, S: int, split_of: dict[tuple[int, int], bool]) -> list[Action]:
    """What ``a`` waits for: the engine contract's dependencies for F, B, I and W."""
    i, s = a.microbatch, a.stage
    if a.kind == "F":
        return [Action("F", i, s - 1)] if s > 0 else []
    if a.kind == "W":
        return [Action("I", i, s)]
    deps = [Action("F", i, s)]
    if s < S - 1:
        deps.append(Action("I" if split_of[i, s + 1] else "B", i, s + 1))
    return deps


def device_orders(table: Sequence[Sequence[Action]], placement: Sequence[int]) -> Orders:
    """Each device's actions in tick order: what one device runs, one after another."""
    orders: Orders = [[] for _ in range(max(placement) + 1)]
    for tick in table:
        for a in tick:
            orders[placement[a.stage]].append(a)
    return orders


def check_rules(p: Puzzle, orders: Orders) -> None:
    """Raise ValueError naming the first action that breaks the puzzle's rules."""
    seen: dict[tuple[str, int], int] = {}
    for device, order in enumerate(orders):
        for a in order:
            if a.kind not in ("F", "B", "I", "W"):
                raise ValueError(f"{a}: kind must be F, B, I or W")
            if a.kind in "IW" and not p.split:
                raise ValueError(f"{a}: puzzle {p.name!r} allows only F and B (no split backward)")
            if not (0 <= a.stage < p.S and 0 <= a.microbatch < p.M):
                raise ValueError(f"{a} is out of range: stages 0..{p.S - 1}, micro-batches 0..{p.M - 1}")
            if p.placement[a.stage] != device:
                raise ValueError(f"{a} runs on device {device}, but stage {a.stage} lives on device "
                                 f"{p.placement[a.stage]}")
            kind = "I" if a.kind == "B" else a.kind
            want = seen.get((kind, a.stage), 0)
            if a.microbatch != want:
                raise ValueError(f"{a}: puzzle rule: on each stage, {kind} passes run in micro-batch order, "
                                 f"so micro-batch {want} comes next")
            seen[kind, a.stage] = want + 1
            if a.kind == "B":
                seen["W", a.stage] = seen.get(("W", a.stage), 0) + 1


def score(p: Puzzle, orders: Orders) -> Score:
    """Step time (earliest starts under the puzzle's costs) and peak memory per device.

    Raises ValueError if an action is missing or the orders deadlock.
    """
    split_of = {(a.microbatch, a.stage): a.kind == "I" for o in orders for a in o if a.kind in "BI"}
    for i in range(p.M):
        for s in range(p.S):
            if (i, s) not in split_of:
                raise ValueError(f"the backward of micro-batch {i} on stage {s} is missing (B, or I and W)")
    finish: dict[Action, int] = {}
    heads, free = [0] * len(orders), [0] * len(orders)
    total = sum(len(o) for o in orders)
    while len(finish) < total:
        moved = False
        for d, order in enumerate(orders):
            while heads[d] < len(order):
                a = order[heads[d]]
                deps = _needs(a, p.S, split_of)
                if any(x not in finish for x in deps):
                    break
                start = max([free[d]] + [finish[x] for x in deps])
                finish[a] = free[d] = start + p.cost(a.kind)
                heads[d] += 1
                moved = True
        if not moved:
            stuck = [order[heads[d]] for d, order in enumerate(orders) if heads[d] < len(order)]
            raise ValueError(f"the orders deadlock: {', '.join(map(str, stuck))} each wait for another device")
    need = {Action(k, i, s) for i in range(p.M) for s in range(p.S)
            for k in (("F", "I", "W") if split_of[i, s] else ("F", "B"))}
    missing = sorted(need - set(finish))
    if missing:
        raise ValueError(f"{missing[0]} is missing: every action runs once")
    peaks = []
    for order in orders:
        held = peak = 0
        for a in order:
            held += 1 if a.kind == "F" else -1 if a.kind in "BW" else 0
            peak = max(peak, held)
        peaks.append(peak)
    return Score(max(finish.values(), default=0), tuple(peaks))


def table_from_orders(orders: Orders, placement: Sequence[int]) -> list[list[Action]]:
    """Place device orders on the earliest unit ticks their dependencies allow (one action per device per tick)."""
    S = len(placement)
    split_of = {(a.microbatch, a.stage): a.kind == "I" for o in orders for a in o if a.kind in "BI"}
    tick_of: dict[Action, int] = {}
    heads, free = [0] * len(orders), [0] * len(orders)
    total = sum(len(o) for o in orders)
    while len(tick_of) < total:
        moved = False
        for d, order in enumerate(orders):
            while heads[d] < len(order):
                a = order[heads[d]]
                deps = _needs(a, S, split_of)
                if any(x not in tick_of for x in deps):
                    break
                tick_of[a] = max([free[d]] + [tick_of[x] + 1 for x in deps])
                free[d] = tick_of[a] + 1
                heads[d] += 1
                moved = True
        if not moved:
            raise ValueError("the orders deadlock")
    table: list[list[Action]] = [[] for _ in range(max(tick_of.values(), default=-1) + 1)]
    for a, t in sorted(tick_of.items(), key=lambda kv: placement[kv[0].stage]):
        table[t].append(a)
    return table


def evaluate(p: Puzzle, table: Sequence[Sequence[Action]]) -> Score:
    """Check a learner's table against the puzzle's rules and score it (ValueError names the problem)."""
    if isinstance(table, str) or not isinstance(table, Sequence):
        raise ValueError("a schedule is a list of ticks, each a list of Action(kind, microbatch, stage)")
    for t, tick in enumerate(table):
        if isinstance(tick, Action) or not isinstance(tick, Sequence):
            raise ValueError(f"tick {t} is {tick!r}: each tick must be a list of actions")
        busy: dict[int, Action] = {}
        for a in tick:
            if not isinstance(a, Action):
                raise ValueError(f"tick {t} holds {a!r}, which is not an Action")
            d = p.placement[a.stage] if 0 <= a.stage < p.S else -1
            if d in busy:
                raise ValueError(f"device {d} runs both {busy[d]} and {a} at tick {t}: one action per device per tick")
            busy[d] = a
    orders = device_orders(table, p.placement)
    check_rules(p, orders)
    return score(p, orders)


LADDER: list[Puzzle] = [
    Puzzle("first light", K=2, M=4,
           story="Two devices, no memory limit: any schedule that never idles needlessly will do."),
    Puzzle("one in, one out", K=4, M=8, cap=4,
           story="Eight micro-batches but room for only four on a device: GPipe's fill needs eight."),
    Puzzle("tighter than K", K=4, M=8, cap=3,
           story="Room for three on four devices: the first device cannot even fill the pipe."),
    Puzzle("split the backward", K=4, M=8, split=True, cap=4,
           story="The backward splits into I (sent upstream at once) and W (whenever you like)."),
    Puzzle("split under pressure", K=4, M=8, split=True, cap=3,
           story="The same split, one micro-batch less room: when do you pay off a W?"),
    Puzzle("slow input gradients", K=3, M=6, I=2, B=3, split=True, cap=3,
           story="I costs twice F here; W is short. Where do the gaps move?"),
    Puzzle("two chunks per device", K=3, M=6, V=2, cap=6,
           story="Each device holds two half-size chunks, stage s on device s mod 3. A 1F1B on the "
                 "unsplit model (F=2, B=4) takes 48; interleave to do better at the same memory."),
    Puzzle("the V", K=3, M=6, V=2, shape="v", split=True, cap=6,
           story="Chunks in a V: device d holds stages d and 5-d, so the turn at the bottom stays on one device."),
    Puzzle("V under pressure", K=3, M=6, V=2, shape="v", split=True, cap=4,
           story="The V again with two chunk-micro-batches less room per device."),
]


@cache
def _solved(p: Puzzle) -> tuple[int, tuple[tuple[Action, ...], ...]]:
    from .puzzle_search import solve

    best, orders = solve(p)
    return best, tuple(tuple(o) for o in orders)


def target(p: Puzzle) -> int:
    """The best step time any rule-abiding table reaches on ``p`` (exact search, cached)."""
    return _solved(p)[0]


def reference_orders(p: Puzzle) -> Orders:
    """Device orders that reach :func:`target` (for instructors and tests; learners find their own)."""
    return [list(o) for o in _solved(p)[1]]


def report(p: Puzzle, table: Sequence[Sequence[Action]]) -> str:
    """One line a learner can read: their time and memory against the target and the cap."""
    got = evaluate(p, table)
    cap = "no cap" if p.cap is None else f"cap {p.cap}"
    verdict = "reached" if got.time <= target(p) and (p.cap is None or max(got.peak) <= p.cap) else "not yet"
    return (f"{p.name}: step time {got.time} (target {target(p)}), peak per device {list(got.peak)} "
            f"({cap}): {verdict}")

"""Schedule puzzles: given K, M, per-action costs and a memory cap, how fast can a step be?

Assignment 07 asks learners to beat the bubble on a ladder of small pipelines.
A target typed by hand could be wrong in either direction (unreachable, or
beatable by a cleverer table), so every target here is computed:
:func:`gpipe_core.puzzle_search.solve` runs an exact A* search over every schedule the puzzle's rules allow and
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
(I or B) and weight-gradient passes (W). Micro-batches are identical, so we
expect the rule to cost no time; tests/test_puzzles.py checks that on small
pipelines against every order, in or out of micro-batch order. Tables that
break it are rejected with the offending action named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from .schedule import Action, dependency_map, device_orders, loop_placement, ticks_from_orders, v_placement, walk
from .simulate import Costs
from .validation import validate

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
            return v_placement(self.K)
        return loop_placement(self.K, self.V)

    @property
    def costs(self) -> Costs:
        """The puzzle's costs for :mod:`gpipe_core.simulate`."""
        return Costs(forward=self.F, backward=self.B, input_grad=self.I, weight_grad=self.W)

    def cost(self, kind: str) -> int:
        return {"F": self.F, "B": self.B, "I": self.I, "W": self.W}[kind]


@dataclass(frozen=True)
class Score:
    """What a table achieves on a puzzle: step time and each device's peak stage-micro-batches."""

    time: int
    peak: tuple[int, ...]


def check_rules(p: Puzzle, orders: Orders) -> None:
    """Raise ValueError naming the first action that breaks the puzzle's rules."""
    seen: dict[tuple[str, int], int] = {}
    for order in orders:
        for a in order:
            if not isinstance(a, Action):
                raise ValueError(f"{a}: puzzle {p.name!r} takes single actions, not an overlapped F&B")
            if a.kind in "IW" and not p.split:
                raise ValueError(f"{a}: puzzle {p.name!r} allows only F and B (no split backward)")
            kind = "I" if a.kind == "B" else a.kind
            want = seen.get((kind, a.stage), 0)
            if a.microbatch != want:
                what = {"F": "forwards", "I": "backwards (I or B)", "W": "weight gradients (W or B)"}[kind]
                raise ValueError(f"{a}: puzzle rule: on each stage, {what} run in micro-batch order, "
                                 f"so micro-batch {want} comes next")
            seen[kind, a.stage] = want + 1
            if a.kind == "B":
                seen["W", a.stage] = seen.get(("W", a.stage), 0) + 1


def score(p: Puzzle, orders: Orders) -> Score:
    """Step time (earliest starts under the puzzle's costs) and peak memory per device of complete orders.

    A device holds a stage-micro-batch from the start of its F to the end of its W or B;
    with one action at a time per device that peak depends only on the device's order.
    Raises ScheduleError (a ValueError) naming the stuck actions if the orders deadlock.
    """
    actions = [a for order in orders for a in order]
    times = walk(orders, dependency_map(actions, p.S), lambda a: p.cost(a.kind))
    peaks = []
    for order in orders:
        held = peak = 0
        for a in order:
            held += 1 if a.kind == "F" else -1 if a.kind in "BW" else 0
            peak = max(peak, held)
        peaks.append(peak)
    return Score(int(max((end for _, end in times.values()), default=0)), tuple(peaks))


def evaluate(p: Puzzle, table: Sequence[Sequence[Action]]) -> Score:
    """Validate a learner's table on the puzzle's devices, check the puzzle's rules, and score it.

    Raises ValueError (ScheduleError for an invalid table) naming the problem.
    """
    table = validate(table, p.M, p.K, p.placement)
    orders = device_orders(table, p.placement)
    check_rules(p, orders)
    return score(p, orders)


def table_from_orders(p: Puzzle, orders: Orders) -> list[list[Action]]:
    """Device orders placed on the earliest unit ticks (one action per device per tick)."""
    return ticks_from_orders(orders, p.placement)



def table_from_text(p: Puzzle, rows: Sequence[str]) -> list[list[Action]]:
    """A table from one line per device listing its actions in order, e.g. ``"F0 F1 I0 W0 ..."``.

    A token is a kind and a micro-batch (``F3``); with several stages per device
    add the stage after a colon (``F3:4``), as :func:`gpipe_core.render` writes
    it. Actions are placed on the earliest ticks their dependencies allow.
    """
    if isinstance(rows, str) or len(rows) != p.K:
        raise ValueError(f"{p.name}: give one line per device, {p.K} lines (got {rows!r:.60})")
    orders: Orders = []
    for d, row in enumerate(rows):
        order = []
        for token in row.split():
            kind, _, rest = token[0], None, token[1:]
            mb, _, stage = rest.partition(":")
            if kind not in "FBIW" or not mb.isdigit() or (stage and not stage.isdigit()):
                raise ValueError(f"device {d}: {token!r} is not an action like F3 or F3:4 (kind, micro-batch, "
                                 ":stage)")
            if not stage and p.V > 1:
                raise ValueError(f"device {d}: {token!r} needs its stage ({token}:s): device {d} holds stages "
                                 f"{[s for s in range(p.S) if p.placement[s] == d]}")
            order.append(Action(kind, int(mb), int(stage) if stage else d))
        orders.append(order)
    return ticks_from_orders(orders, p.placement)


def text_from_orders(p: Puzzle, orders: Orders) -> list[str]:
    """The inverse of :func:`table_from_text`: one line per device."""
    return [" ".join(f"{a.kind}{a.microbatch}" + (f":{a.stage}" if p.V > 1 else "") for a in order)
            for order in orders]

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


def target(p: Puzzle) -> int:
    """The best step time any rule-abiding table reaches on ``p``.

    For the ladder it is read from :mod:`gpipe_core.puzzle_targets`, which
    ``python -m gpipe_core.puzzles`` writes from the exact search (a test checks
    the file against a fresh search); any other puzzle is searched here.
    """
    from .puzzle_targets import TARGETS

    if p in LADDER and p.name in TARGETS:
        return TARGETS[p.name]
    return _solved(p)[0]


@cache
def _solved(p: Puzzle) -> tuple[int, tuple[tuple[Action, ...], ...]]:
    from .puzzle_search import solve

    best, orders = solve(p)
    return best, tuple(tuple(o) for o in orders)


def reference_orders(p: Puzzle) -> Orders:
    """Device orders that reach the best step time (for instructors and tests; learners find their own)."""
    return [list(o) for o in _solved(p)[1]]


def report(p: Puzzle, table: Sequence[Sequence[Action]]) -> str:
    """One line a learner can read: their time and memory against the target and the cap."""
    got = evaluate(p, table)
    cap = "no cap" if p.cap is None else f"cap {p.cap}"
    verdict = "reached" if got.time <= target(p) and (p.cap is None or max(got.peak) <= p.cap) else "not yet"
    return (f"{p.name}: step time {got.time} (target {target(p)}), peak per device {list(got.peak)} "
            f"({cap}): {verdict}")


def write_targets(path: str | None = None) -> dict[str, int]:
    """Search every ladder puzzle and write gpipe_core/puzzle_targets.py (run when the ladder changes)."""
    from pathlib import Path

    targets = {p.name: _solved(p)[0] for p in LADDER}
    lines = ['"""Best step time of each ladder puzzle, written by ``python -m gpipe_core.puzzles`` from the exact',
             'search in :mod:`gpipe_core.puzzle_search` (tests/test_puzzles.py checks it against a fresh search).',
             '"""', "", "TARGETS: dict[str, int] = {"]
    lines += [f'    "{name}": {t},' for name, t in targets.items()] + ["}", ""]
    out = Path(path) if path else Path(__file__).with_name("puzzle_targets.py")
    out.write_text("\n".join(lines))
    return targets


if __name__ == "__main__":
    for name, t in write_targets().items():
        print(f"{name}: {t}")

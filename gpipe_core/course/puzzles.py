"""Schedule puzzles: given K, M, per-action costs and a memory cap, how fast can a step be?

Assignment 07 ends with a ladder of such puzzles, drawn per student
(:mod:`gpipe_core.course.puzzle_ladder`). This module is what a learner needs to
state, check and score a table: the :class:`Puzzle` statement, the puzzle
rules, the step time and peak memory of a table, every criterion a table
misses (:func:`shortfalls`, the same words the grader uses) and a one-look
:func:`report`. The *target* of a puzzle (the best step time any rule-abiding
table reaches) is computed by the grader's exact search, which is not part of
this package: a search that hands out optimal tables would hand out the answers.
What learners get instead is :func:`lower_bound`, a proven floor that no table
can beat, and, for every puzzle the ladder can draw, the target's value alone
(:mod:`gpipe_core.course.puzzle_targets`, precomputed by the grader's search: a goal,
not a table that reaches it).

The model is the course's: each device runs its actions one at a time in the
order of the table; an action starts when its device is free and the actions
it depends on have finished (no transfer cost); the step time is when the last
action ends. Memory is counted in *stage-micro-batches*: the activations of one
micro-batch in one stage (chunk). A device holds one from the start of that
micro-batch's forward on one of its stages until its weight gradient (W, or the
whole backward B) on that stage has finished. The peak depends only on each
device's order, not on the timing.

Puzzle rule: on every stage, forwards run in micro-batch order, and so do
input-gradient passes (I or B) and weight-gradient passes (W). Micro-batches
are identical, so the rule costs no time (tests/test_puzzle_search.py checks that
against every order on small pipelines) and keeps the grader's search exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..schedules.schedule import (
    Action,
    dependency_map,
    device_orders,
    loop_placement,
    ticks_from_orders,
    v_placement,
    walk,
)
from ..schedules.validation import validate
from ..sim.simulate import Costs

Orders = list[list[Action]]


@dataclass(frozen=True)
class Puzzle:
    """One puzzle. Costs are whole time units per action on one stage (chunk); ``cap=None``: no memory cap."""

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
        """The puzzle's costs for :mod:`gpipe_core.sim.simulate`."""
        return Costs(forward=self.F, backward=self.B, input_grad=self.I, weight_grad=self.W)

    def cost(self, kind: str) -> int:
        """Time units of one action of ``kind`` (F, B, I or W) on one stage."""
        return {"F": self.F, "B": self.B, "I": self.I, "W": self.W}[kind]

    def statement(self) -> str:
        """The puzzle in one line: sizes, placement, costs, kinds allowed and the cap."""
        where = "one stage per device" if self.V == 1 else f"V={self.V} chunks per device, placement {self.placement}"
        costs = f"F={self.F}, I={self.I}, W={self.W} (or B={self.B})" if self.split else f"F={self.F}, B={self.B}"
        kinds = "F, I, W (B allowed)" if self.split else "F, B"
        cap = "none" if self.cap is None else f"{self.cap} stage-micro-batches per device"
        return f"K={self.K} devices, M={self.M} micro-batches, {where}; costs {costs}; kinds {kinds}; memory cap {cap}"


@dataclass(frozen=True)
class Score:
    """What a table achieves on a puzzle: step time, each device's peak stage-micro-batches and idle time."""

    time: int
    peak: tuple[int, ...]
    idle: tuple[int, ...] = ()


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
    """Step time (earliest starts under the puzzle's costs), peak memory and idle time per device of complete orders.

    A device holds a stage-micro-batch from the start of its F to the end of its W or B;
    with one action at a time per device that peak depends only on the device's order.
    Raises ScheduleError (a ValueError) naming the stuck actions if the orders deadlock.
    """
    actions = [a for order in orders for a in order]
    times = walk(orders, dependency_map(actions, p.S), lambda a: p.cost(a.kind))
    step = int(max((end for _, end in times.values()), default=0))
    peaks = []
    for order in orders:
        held = peak = 0
        for a in order:
            held += 1 if a.kind == "F" else -1 if a.kind in "BW" else 0
            peak = max(peak, held)
        peaks.append(peak)
    idle = tuple(step - sum(p.cost(a.kind) for a in order) for order in orders)
    return Score(step, tuple(peaks), idle)


def evaluate(p: Puzzle, table: Sequence[Sequence[Action]]) -> Score:
    """Validate a learner's table on the puzzle's devices, check the puzzle's rules, and score it.

    Raises ValueError (ScheduleError for an invalid table) naming the problem.
    """
    table = validate(table, p.M, p.K, p.placement)
    orders = device_orders(table, p.placement)
    check_rules(p, orders)
    return score(p, orders)


def shortfalls(p: Puzzle, table: Sequence[Sequence[Action]], target: int | None = None) -> list[str]:
    """Every criterion ``table`` misses on ``p``, one sentence each; empty when it meets them all.

    The criteria: a valid table on the puzzle's devices that obeys the puzzle rules; each device's
    peak within the cap; and, when ``target`` is given (the grader gives it), a step time no longer
    than the target. The grader's messages are these sentences.
    """
    found = _sizes(table)
    if found is not None and found != (p.M, p.S):
        return [f"puzzle: your table has {found[0]} micro-batches on {found[1]} stages, this puzzle has M={p.M} on "
                f"S={p.S} stages (a table written for another puzzle, another rung or another student's drawing, "
                "does not fit): build it for the puzzle you are given"]
    try:
        got = evaluate(p, table)
    except ValueError as exc:
        return [f"rules: {exc}"]
    out = []
    if p.cap is not None:
        for d, held in enumerate(got.peak):
            if held > p.cap:
                sooner = ", or retire weight gradients sooner" if p.split else ""
                out.append(f"memory: device {d} holds {held} stage-micro-batches at its peak, over the cap of "
                           f"{p.cap} (the step time is not the fault: start fewer forwards on device {d} before its "
                           f"first backward{sooner})")
    if target is not None and got.time > target:
        out.append(f"time: step time {got.time}, the target is {target} ({got.time - target} too slow; idle per "
                   f"device {list(got.idle)})")
    return out


def _sizes(table: Sequence[Sequence[Action]]) -> tuple[int, int] | None:
    """(micro-batches, stages) a table mentions, or None when it is not a list of ticks of Actions."""
    try:
        actions = [a for tick in table for a in tick if isinstance(a, Action)]
    except TypeError:
        return None
    if not actions:
        return None
    return max(a.microbatch for a in actions) + 1, max(a.stage for a in actions) + 1


def lower_bound(p: Puzzle) -> int:
    """A step time no rule-abiding table can beat: the largest of three floors.

    * work: device d cannot start before the first forward reaches its first stage, then runs
      every one of its actions one after the other, and (whole backwards only) its last B
      still has to pass through every stage above its first one;
    * chain: the last micro-batch's forward on stage 0 waits for the M - 1 before it, then
      crosses every stage down and back up;
    * memory (when capped): a stage-micro-batch on stage s is held at least from its forward's
      start to the end of its own weight gradient, a round trip through stages s..S-1. A device
      holding at most ``cap`` at once, from its start to the end of the step, covers at most
      cap x (time it is busy holding), which must reach M x the sum of its stages' round trips.
    """
    split = p.split
    i_min = min(p.I, p.B) if split else p.B  # the fastest input gradient a stage can pass upstream
    own = min(p.I + p.W, p.B) if split else p.B  # the fastest full backward of one stage
    place, S, M = p.placement, p.S, p.M
    best = (M - 1) * p.F + S * p.F + (S - 1) * i_min + own
    for d in range(p.K):
        stages = [s for s in range(S) if place[s] == d]
        start = min(stages) * p.F
        tail = 0 if split else min(stages) * p.B  # a device's last B still has to travel up to stage 0
        best = max(best, start + len(stages) * M * (p.F + own) + tail)
        if p.cap is not None:
            trips = sum((S - s) * p.F + (S - s - 1) * i_min + own for s in stages)
            best = max(best, start + -(-M * trips // p.cap))
    return best


def report(p: Puzzle, table: Sequence[Sequence[Action]], target: int | None = None) -> str:
    """What a learner reads: time, peak and idle time per device, the floor, and each criterion not yet met."""
    floor = lower_bound(p)
    missed = shortfalls(p, table, target)
    try:
        got = evaluate(p, table)
    except ValueError:
        return f"{p.name}: not yet: " + "; ".join(missed)
    cap = "no cap" if p.cap is None else f"cap {p.cap}"
    goal = f"target {target}" if target is not None else "target: the grader's exact best"
    line = (f"{p.name}: step time {got.time} ({goal}; proven lower bound {floor}), peak per device "
            f"{list(got.peak)} ({cap}), idle per device {list(got.idle)}")
    if missed:
        return f"{line}: not yet: " + "; ".join(missed)
    if target is None and got.time > floor:
        return f"{line}: within the rules and the cap; {got.time - floor} above the lower bound"
    return f"{line}: reached"


def table_from_orders(p: Puzzle, orders: Orders) -> list[list[Action]]:
    """Device orders placed on the earliest unit ticks (one action per device per tick)."""
    return ticks_from_orders(orders, p.placement)


def table_from_text(p: Puzzle, rows: Sequence[str]) -> list[list[Action]]:
    """A table from one line per device listing its actions in order, e.g. ``"F0 F1 I0 W0 ..."``.

    A token is a kind and a micro-batch (``F3``); with several stages per device
    add the stage after a colon (``F3:4``), as :func:`gpipe_core.render` writes
    it. Actions are placed on the earliest ticks their dependencies allow.
    """
    if isinstance(rows, str):
        raise ValueError(f"{p.name}: give a list of lines, one per device ({p.K} lines), not one string")
    if len(rows) != p.K:
        raise ValueError(f"{p.name}: give one line per device: this puzzle has K={p.K} devices, your text has "
                         f"{len(rows)} lines (a table written for another puzzle, another rung or another "
                         "student's drawing, does not fit)")
    orders: Orders = []
    for d, row in enumerate(rows):
        order = []
        for token in row.split():
            kind, rest = token[0], token[1:]
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

"""The exact search behind every puzzle target of assignment 07: A* over the states of a pipeline step.

It lives in the grader, not in ``gpipe_core``: it returns optimal tables, so a
learner who could import it would have every answer. The judge calls
:func:`target` on the puzzles it draws for the student being graded.

A state is the moment some action finishes: how many F, I and W passes each
stage has completed (the puzzle rule keeps each kind in micro-batch order, so
counters say everything), and what each device is running and for how much
longer. At that moment every idle device either starts one of its eligible
actions or waits for the next completion; waiting is a real choice, because a
memory cap or a more urgent backward can make it pay. Starting an action later
than its earliest moment with nothing having changed is never better (memory
depends only on the order), so jumping from completion to completion loses no
schedule.

It also writes :mod:`gpipe_core.course.puzzle_targets`: the target of every puzzle
the ladder can draw, values only (``python -m autograder.judge.puzzle_search
--write-targets``), so the notebook can print each learner's targets. The
judge never reads that file.

The lower bound added to the elapsed time is the larger of (a) each device's
remaining work and (b) the last micro-batch's remaining chain of forwards and
backwards. Neither can overestimate, so A* returns an optimal step time: the
target is reachable (the orders come back) and tight (nothing faster exists
under the rules).
"""

from __future__ import annotations

import heapq
import itertools
from functools import cache
from pathlib import Path

from gpipe_core.course.puzzle_ladder import RUNGS, drawable, ladder
from gpipe_core.course.puzzles import Orders, Puzzle, lower_bound
from gpipe_core.schedules.schedule import Action

F, I, W, B = 0, 1, 2, 3  # noqa: E741
NAMES = "FIWB"


class SearchTooLarge(RuntimeError):
    """The puzzle has more states than the search may visit: make K, M or the stages smaller."""


def solve(p: Puzzle, max_states: int = 2_000_000) -> tuple[int, Orders]:
    """Optimal step time of ``p`` and device orders that reach it."""
    S, M, K = p.S, p.M, p.K
    place = p.placement
    stages_of = [[s for s in range(S) if place[s] == d] for d in range(K)]
    cost = [p.F, p.I, p.W, p.B]
    cap = p.cap if p.cap is not None else M * S

    def options(d: int, done: tuple[int, ...]) -> list[tuple[int, int]]:
        opts = []
        held = sum(done[3 * s] - done[3 * s + 2] for s in stages_of[d])
        for s in stages_of[d]:
            f, i, w = done[3 * s: 3 * s + 3]
            if f < M and (s == 0 or done[3 * (s - 1)] > f) and held < cap:
                opts.append((F, s))
            if i < M and f > i and (s == S - 1 or done[3 * (s + 1) + 1] > i):
                opts.append((I if p.split else B, s))
            if p.split and w < i:
                opts.append((W, s))
        return opts

    def bound(done: tuple[int, ...], run: tuple) -> int:
        best = 0
        for d in range(K):
            left = run[d][2] if run[d] else 0
            for s in stages_of[d]:
                f, i, w = done[3 * s: 3 * s + 3]
                left += (M - f) * p.F + (M - i) * (p.I if p.split else p.B) + ((M - w) * p.W if p.split else 0)
                if run[d] and run[d][1] == s:  # the running action is counted by its remaining time
                    k = run[d][0]
                    left -= cost[k] if k != B else p.B
            best = max(best, left)
        chain = 0
        busy = {(r[0], r[1]): r[2] for r in run if r}
        for s in range(S):
            f, i, w = done[3 * s: 3 * s + 3]
            if f < M:
                chain += busy.get((F, s), p.F)
            if i < M:
                k = I if p.split else B
                chain += busy.get((k, s), cost[k])
        if p.split and done[2] < M:
            chain += busy.get((W, 0), p.W)
        return max(best, chain)

    start_done = tuple([0] * (3 * S))
    start_run = tuple([None] * K)
    start = (start_done, start_run)
    best_t = {start: 0}
    parent: dict = {start: None}
    tie = itertools.count()
    queue = [(bound(start_done, start_run), 0, next(tie), start)]
    goal = tuple([M] * (3 * S))
    while queue:
        f_val, neg_t, _, key = heapq.heappop(queue)
        t = -neg_t
        if best_t.get(key, t + 1) < t:
            continue
        done, run = key
        if done == goal:
            return t, _orders(p, parent, key)
        idle = [d for d in range(K) if run[d] is None]
        choices = [options(d, done) + [None] for d in idle]
        for pick in itertools.product(*choices):
            new_run = list(run)
            starts = []
            for d, c in zip(idle, pick):
                if c is not None:
                    new_run[d] = (c[0], c[1], cost[c[0]])
                    starts.append((c[0], c[1]))
            live = [r for r in new_run if r]
            if not live:
                continue
            dt = min(r[2] for r in live)
            nd = list(done)
            for d, r in enumerate(new_run):
                if r is None:
                    continue
                if r[2] == dt:
                    k, s = r[0], r[1]
                    if k == B:
                        nd[3 * s + 1] += 1
                        nd[3 * s + 2] += 1
                    else:
                        nd[3 * s + k] += 1
                    new_run[d] = None
                else:
                    new_run[d] = (r[0], r[1], r[2] - dt)
            nkey = (tuple(nd), tuple(new_run))
            nt = t + dt
            if best_t.get(nkey, nt + 1) <= nt:
                continue
            best_t[nkey] = nt
            parent[nkey] = (key, t, starts)
            if len(best_t) > max_states:
                raise SearchTooLarge(f"puzzle {p.name!r}: more than {max_states} states; make it smaller")
            heapq.heappush(queue, (nt + bound(nkey[0], nkey[1]), -nt, next(tie), nkey))
    raise ValueError(f"puzzle {p.name!r} has no schedule: the memory cap {p.cap} is too small to start")


def _orders(p: Puzzle, parent: dict, key: tuple) -> Orders:
    """Walk back from the goal and read each device's actions in start order."""
    events = []
    while parent[key] is not None:
        prev, t, starts = parent[key]
        done = prev[0]
        for k, s in starts:
            counter = 0 if k == F else 2 if k == W else 1
            events.append((t, Action(NAMES[k], done[3 * s + counter], s)))
        key = prev
    orders: Orders = [[] for _ in range(p.K)]
    for _, a in sorted(events, key=lambda e: e[0]):
        orders[p.placement[a.stage]].append(a)
    return orders


@cache
def _solved(p: Puzzle) -> tuple[int, tuple[tuple[Action, ...], ...]]:
    best, orders = solve(p)
    return best, tuple(tuple(o) for o in orders)


def target(p: Puzzle) -> int:
    """The best step time any rule-abiding table reaches on ``p`` (exact, cached per puzzle)."""
    return _solved(p)[0]


def reference_orders(p: Puzzle) -> Orders:
    """Device orders that reach the target (for the grader's tests and the honest class; never for learners)."""
    return [list(o) for o in _solved(p)[1]]


def publish(student: str) -> list[str]:
    """Each of ``student``'s drawn puzzles with its lower bound and its target (the notebook prints the same)."""
    puzzles = ladder(student)
    return [f"puzzle {n} ({p.name}): {p.statement()}; lower bound {lower_bound(p)}, target {target(p)}"
            for n, p in enumerate(puzzles, start=1)]


TARGETS_FILE = Path(__file__).resolve().parents[2] / "gpipe_core" / "puzzle_targets.py"


def drawable_targets() -> dict[str, int]:
    """Every puzzle the ladder can draw, by statement, with its target (a few seconds of search in all)."""
    return {p.statement(): target(p) for n in range(1, len(RUNGS) + 1) for p in drawable(n)}


TARGETS_HEADER = """The target of every puzzle assignment 07's ladder can draw: a time to reach, not how to reach it.

Generated by ``python -m autograder.judge.puzzle_search --write-targets`` (the
grader's exact search over every drawable puzzle, gpipe_core.course.puzzle_ladder.
drawable); do not edit. Keyed by ``Puzzle.statement()``. The grader does not
read this file: it searches again when it grades. tests/test_puzzle_targets.py
checks that the keys are exactly the drawable puzzles and samples the values.
"""


def targets_source(rows: dict[str, int]) -> str:
    """The text of gpipe_core/course/puzzle_targets.py holding ``rows``: statements and targets, nothing else."""
    body = "".join(f"    {s!r}: {t},\n" for s, t in sorted(rows.items()))
    lint = "# ruff: noqa: E501 (one generated line per puzzle, keyed by its whole statement)"
    return f'"""{TARGETS_HEADER}"""\n\n{lint}\nTARGETS: dict[str, int] = {{\n{body}}}\n'


def write_targets(path: Path = TARGETS_FILE) -> int:
    """Write every drawable puzzle's target to ``path`` (gpipe_core/course/puzzle_targets.py); returns how many."""
    rows = drawable_targets()
    path.write_text(targets_source(rows))
    return len(rows)


if __name__ == "__main__":  # python -m autograder.judge.puzzle_search [--write-targets] [ID ...]
    import sys

    if "--write-targets" in sys.argv[1:]:
        print(f"{write_targets()} targets written to {TARGETS_FILE}")
    for _student in [a for a in sys.argv[1:] if a != "--write-targets"]:
        print("\n".join(publish(_student)), end="\n\n")

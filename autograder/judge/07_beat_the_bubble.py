"""Judge of assignment 07: ZB-H1, interleaved 1F1B, their engine runs, and the nine-puzzle ladder drawn per student.

Tables come back from the probe as plain data; everything else happens here,
with the real gpipe_core: validation (placements included), step time and
peak memory under unit costs (ZB-H1: 3M+K-1 and at most K held; interleaved:
6M+3(K-1) chunk units and 1F1B-interleaved's memory), and, for every graded
table, a training step on the engine compared with the sequential model,
dropout included. Sizes are drawn per grading run, so a table copied for the
visible sizes cannot pass. The puzzles are drawn from the id of the student
being graded (:func:`gpipe_core.course.puzzle_ladder.draw`), handed to the learner's
``puzzle_n`` through the notebook's locked ``solve_puzzle``, and their targets
are computed here by the exact search (:mod:`autograder.judge.puzzle_search`,
which learners cannot import; the target values shipped to learners in
:mod:`gpipe_core.course.puzzle_targets` are never read here). A puzzle's table must meet every criterion of
:func:`gpipe_core.course.puzzles.shortfalls` against that target (the visible tests
name the same criteria in the same words) and run on the engine with exact
gradients.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from autograder.judge.base import Checks, Failed, expect
from autograder.judge.facts import Review
from autograder.judge.probe_harness import build
from autograder.judge.puzzle_search import target
from autograder.judge.shared_tables import learner_table, matches_sequential
from autograder.judge.view import PUZZLES, TABLES
from autograder.sandbox.limits import Limits
from gpipe_core import GPipe, ScheduleError, render
from gpipe_core.course.puzzle_ladder import PRACTICE_ID, RUNGS, draw
from gpipe_core.course.puzzles import shortfalls
from gpipe_core.schedules.schedule import Action, loop_placement
from gpipe_core.sim.simulate import UNIT, peak_memory, times

CHECKS = Checks()
EXERCISES = {  # what would solve each exercise: the grading view has no body for it (autograder/judge/view.py)
    "zb_h1": TABLES.plus("schedules.zoo.zb_h1_schedule"),
    "interleaved": TABLES.plus("schedules.zoo.interleaved_schedule"),
    "puzzle_helper": PUZZLES, **{f"puzzle_{n}": PUZZLES for n in range(1, len(RUNGS) + 1)}}
KEEP = {  # what the notebook hands learners as tools keeps its body, with why
    "schedules.schedule.one_f_one_b_schedule": "notebook 07 starts from 1F1B (assignment 03's exercise); no drawn "
                                     "puzzle is solved by it (tests/test_puzzles.py)",
    "schedules.schedule.ticks_from_orders": "notebook 07's tool: it places the learner's own orders on ticks",
    "schedules.schedule._place": "the body of ticks_from_orders, notebook 07's tool",
    "course.puzzles.table_from_text": "notebook 07's tool: the learner's own orders, written as text, on ticks",
    "course.puzzles.table_from_orders": "notebook 07's tool: the learner's own orders on ticks"}
LIMITS = Limits(cell_timeout_s=30, notebook_timeout_s=180)  # the slowest graded cell on 2 cores, times ~10
# the exact search behind every puzzle target returns optimal tables, and the repository is public
REVIEW = Review(grader_code=("autograder/judge/puzzle_search.py",))


def _step(table: list[list[Action]], K: int, placement: list[int] | None) -> int:
    return int(max(end for _, end in times(table, K, UNIT, placement=placement).values()))


def _held(table: list[list[Action]], K: int, placement: list[int] | None) -> list[int]:
    return [int(x) for x in peak_memory(table, K, costs=UNIT, placement=placement)]


def _spec(seed: int) -> dict:
    block = ["Seq", [["Linear", 12, 12], ["Tanh"], ["Dropout", 0.3]]]
    return {"seed": seed, "layers": [block] * 7 + [["Linear", 12, 4]]}


def _engine_equal(table: list[list[Action]], M: int, K: int, placement: list[int] | None, seed: int,
                  where: str, executor: str = "threads") -> None:
    """Run the (already validated, plain) table on the real engine; loss and gradients equal the sequential model's.

    ``executor="inline"`` walks the same table in one thread: the same actions in the same order, three
    times faster on small models, used for the puzzles (the ZB-H1 and interleaved runs use worker threads).
    """
    gen = torch.Generator().manual_seed(seed)
    batch = random.Random(seed).randint(M, 3 * M + 2)
    x, y = torch.randn(batch, 12, generator=gen), torch.randint(0, 4, (batch,), generator=gen)
    model, ref = build(_spec(seed)), build(_spec(seed))
    V = 1 if placement is None else len(placement) // K
    try:
        pipe = GPipe(model, partitions=K, virtual=V, placement=placement, chunks=M, schedule=table, devices="cpu",
                     executor=executor)
        loss = pipe.step(x, y, nn.functional.cross_entropy, seed=seed)
    except (ScheduleError, ValueError) as exc:
        raise Failed(f"{where}: the engine rejects your table: {exc}") from None
    matches_sequential(loss, [p.grad for p in model.parameters()], ref, x, y, pipe.balance, M, seed, where)


def _zb_sizes(rng: random.Random, count: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while len(out) < count:
        K = rng.randint(1, 6)
        M = rng.randint(K, 12)
        if (M, K) not in out:
            out.append((M, K))
    return out


def _interleaved_sizes(rng: random.Random, count: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while len(out) < count:
        K = rng.randint(1, 4)
        M = K * rng.randint(1, 3)
        if (M, K) not in out:
            out.append((M, K))
    return out


def _check_zb_h1(table: list[list[Action]], M: int, K: int, where: str) -> None:
    kinds = {a.kind for tick in table for a in tick}
    expect(kinds == {"F", "I", "W"}, f"{where}: ZB-H1 splits every backward into I and W; your kinds are "
                                     f"{sorted(kinds)}")
    step, held = _step(table, K, None), _held(table, K, None)
    expect(step == 3 * M + K - 1, f"{where}: your step takes {step} units under unit costs, ZB-H1's takes 3M+K-1 = "
                                  f"{3 * M + K - 1}: defer W(i) on device d until after I(i+d)\n{render(table)}")
    expect(max(held) <= K, f"{where}: a device holds up to {max(held)} micro-batches, ZB-H1 at most K = {K}")


def _check_interleaved(table: list[list[Action]], M: int, K: int, where: str) -> None:
    place = loop_placement(K, 2)
    step, held = _step(table, K, place), _held(table, K, place)
    want = 6 * M + 3 * (K - 1)
    expect(step == want, f"{where}: your step takes {step} chunk units, interleaved 1F1B's takes 6M+3(K-1) = {want}"
                         f"\n{render(table, placement=place)}")
    limit = [min(2 * (K - 1 - d) + K + 1, 2 * M) for d in range(K)]
    expect(all(h <= lim for h, lim in zip(held, limit)),
           f"{where}: your devices hold {held} chunks at their peaks; interleaved 1F1B holds at most {limit}")


@CHECKS("test_zb_h1")
def zb_h1(ask, rng: random.Random):
    cases = [(4, 4), (8, 3), (1, 1)] + _zb_sizes(rng, 6)
    replies = [ask.call("zb_h1", M, K) for M, K in cases]

    def verify() -> None:
        for (M, K), reply in zip(cases, replies):
            where = f"ZB-H1, M={M}, K={K}"
            _check_zb_h1(learner_table(reply.value(f"zb_h1({M}, {K})"), M, K, None, where), M, K, where)

    return verify


@CHECKS("test_interleaved")
def interleaved(ask, rng: random.Random):
    cases = [(4, 2), (6, 3)] + _interleaved_sizes(rng, 5)
    replies = [ask.call("interleaved", M, K) for M, K in cases]

    def verify() -> None:
        for (M, K), reply in zip(cases, replies):
            where = f"interleaved 1F1B, M={M}, K={K}"
            table = learner_table(reply.value(f"interleaved({M}, {K})"), M, K, loop_placement(K, 2), where)
            _check_interleaved(table, M, K, where)

    return verify


@CHECKS("test_engine_run")
def engine_run(ask, rng: random.Random):
    zb = [(4, 2)] + _zb_sizes(rng, 2)
    il = [(4, 2)] + _interleaved_sizes(rng, 2)
    jobs = [(name, M, K, ask.call(name, M, K), rng.randrange(10_000))
            for name, sizes in (("zb_h1", zb), ("interleaved", il)) for M, K in sizes]

    def verify() -> None:
        for name, M, K, reply, seed in jobs:
            place = None if name == "zb_h1" else loop_placement(K, 2)
            where = f"your {name}({M}, {K}) table on the engine"
            table = learner_table(reply.value(f"{name}({M}, {K})"), M, K, place, where)
            _engine_equal(table, M, K, place, seed, where)

    return verify


def statement(p: object) -> dict:
    """A puzzle as plain data: the notebook's ``solve_puzzle`` rebuilds it with ``Puzzle(**statement)``."""
    from dataclasses import asdict

    return asdict(p)  # type: ignore[call-overload]


def _puzzle_check(n: int):
    def check(ask, rng: random.Random):
        student = getattr(ask, "student", "") or PRACTICE_ID
        p = draw(student, n)
        reply = ask.call("solve_puzzle", n, statement(p))
        seed = rng.randrange(10_000)

        def verify() -> None:
            where = f"puzzle {n} ({p.name}, drawn for student {student!r}: {p.statement()})"
            got = reply.value(f"puzzle_{n}(your puzzle)")
            plain = type(got) is list and all(type(t) is list and all(type(a) is Action for a in t) for t in got)
            if plain:  # anything else gets learner_table's message about what a schedule is
                missed = shortfalls(p, got, target(p))
                expect(not missed, f"{where}: not yet: " + "; ".join(missed))
            table = learner_table(got, p.M, p.K, p.placement, where)
            _engine_equal(table, p.M, p.K, None if p.V == 1 else p.placement, seed, where + " on the engine",
                          executor="inline")

        return verify

    return check


for _n in range(1, len(RUNGS) + 1):
    CHECKS(f"test_puzzle_{_n}")(_puzzle_check(_n))

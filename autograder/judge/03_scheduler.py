"""Judge of assignment 03: fill_drain_schedule, idle_fraction, the engine run, one_f_one_b.

Tables come back as plain data (lists of ``Action``) and are validated here by
the real ``gpipe_core.validate``; the fill-drain table is compared with
``gpipe_schedule`` for square and non-square M, K drawn per grading run (a
table copied for the visible sizes cannot pass), and the engine run compares
the learner's table's loss and gradients with the sequential model, dropout
included.
"""

from __future__ import annotations

import random

import torch

from autograder.judge.base import Checks, expect, number
from autograder.judge.probe_harness import build
from autograder.judge.shared_tables import learner_table, matches_sequential
from autograder.judge.view import FILL_DRAIN, TABLES, Family
from autograder.sandbox.limits import Limits
from gpipe_core import gpipe_schedule, one_f_one_b_schedule, render
from gpipe_core.engine.partition import balance_by_count
from gpipe_core.schedules.schedule import Action

CHECKS = Checks()
EXERCISES = {  # what would solve each exercise: the grading view has no body for it (autograder/judge/view.py)
    "fill_drain_schedule": FILL_DRAIN,
    "idle_fraction": Family(why="no engine function counts a table's idle cells"),
    "one_f_one_b": TABLES.plus("schedules.schedule.one_f_one_b_schedule", "schedules.schedule.ticks_from_orders")}
LIMITS = Limits(cell_timeout_s=30, notebook_timeout_s=180)  # the slowest graded cell on 2 cores, times ~10


def _sizes(rng: random.Random, count: int, top: int = 9) -> list[tuple[int, int]]:
    out = []
    while len(out) < count:
        M, K = rng.randint(1, top), rng.randint(1, top)
        if (M, K) not in out:
            out.append((M, K))
    return out


@CHECKS("test_fill_drain")
def fill_drain(ask, rng: random.Random):
    cases = [(4, 4), (1, 1)] + _sizes(rng, 6) + [(rng.randint(10, 16), rng.randint(2, 4))]
    replies = [ask.call("fill_drain_schedule", M, K) for M, K in cases]
    bad = ask.call("fill_drain_schedule", 0, 2)

    def verify() -> None:
        for (M, K), reply in zip(cases, replies):
            table = learner_table(reply.value(f"fill_drain_schedule({M}, {K})"), M, K, None, f"M={M}, K={K}")
            orders = [[a.microbatch for t in table for a in t if a.kind == "B" and a.stage == j] for j in range(K)]
            expect(all(o == list(range(M - 1, -1, -1)) for o in orders),
                   f"M={M}, K={K}: each stage must run its backwards in reverse micro-batch order, from {M - 1} down "
                   f"to 0 (GPipe's reverse drain); yours run {orders}")
            want = gpipe_schedule(M, K)
            mine = [sorted(t, key=lambda a: a.stage) for t in table]
            expect(mine == want, f"M={M}, K={K}: your table differs from GPipe's fill-drain table (every action at "
                                 f"the earliest tick).\nyours:\n{render(table, K)}\nexpected:\n{render(want, K)}")
        expect(bad.raised("ValueError"), "fill_drain_schedule(M=0, K=2) must raise ValueError: nothing to schedule")

    return verify


def _stretched(rng: random.Random, M: int, K: int) -> list[list[Action]]:
    table = [list(t) for t in gpipe_schedule(M, K)]
    for _ in range(rng.randint(1, 4)):
        table.insert(rng.randint(0, len(table)), [])
    return table


@CHECKS("test_idle_fraction")
def idle(ask, rng: random.Random):
    tiny = [[Action("F", 0, 0)], [Action("F", 0, 1)], [Action("B", 0, 1)], [Action("B", 0, 0)]]
    cases = [(gpipe_schedule(4, 4), 4), ([[Action("F", 0, 0)], [], [Action("B", 0, 0)]], 1), (tiny, 2)]
    for M, K in _sizes(rng, 3, top=7):
        cases += [(gpipe_schedule(M, K), K), (one_f_one_b_schedule(M, K), K), (_stretched(rng, M, K), K)]
    cases.append((gpipe_schedule(3, 2), 4))  # two of four stages never used
    replies = [ask.call("idle_fraction", t, K) for t, K in cases]

    def verify() -> None:
        for (table, K), reply in zip(cases, replies):
            actions = sum(len(t) for t in table)
            want = 1 - actions / (K * len(table))
            where = f"K={K}, a table of {len(table)} ticks holding {actions} actions"
            got = number(reply.value(f"idle_fraction({where})"), where)
            expect(abs(got - want) < 1e-9, f"{where} idles {want:.4f} of its stage-ticks, you got {got}: count the "
                                           "empty stage-ticks of the table you are given (not a formula)")

    return verify


def _blocks(seed: int) -> dict:
    block = ["Seq", [["Linear", 12, 12], ["Tanh"], ["Dropout", 0.3]]]
    return {"seed": seed, "layers": [block] * 5 + [["Linear", 12, 4]]}


@CHECKS("test_engine_run")
def engine_run(ask, rng: random.Random):
    cases = [(3, 2, 1)] + [(M, K, rng.randrange(1000)) for M, K in _sizes(rng, 4, top=6)]
    data = []
    for _, _, seed in cases:
        g = torch.Generator().manual_seed(seed)
        data.append((torch.randn(11, 12, generator=g), torch.randint(0, 4, (11,), generator=g)))
    replies = [ask.task("engine_run", fn="fill_drain_schedule", M=M, K=K, model=_blocks(seed), x=x, y=y, seed=seed)
               for (M, K, seed), (x, y) in zip(cases, data)]

    def verify() -> None:
        for (M, K, seed), (x, y), reply in zip(cases, data, replies):
            where = f"your M={M}, K={K} table on the engine"
            got = reply.value(where)
            ref = build(_blocks(seed))
            matches_sequential(got["loss"], got["grads"], ref, x, y, balance_by_count(len(ref), K), M, seed, where)

    return verify


@CHECKS("test_one_f_one_b")
def one_f_one_b(ask, rng: random.Random):
    cases = [(4, 4), (6, 2)] + _sizes(rng, 6)
    replies = [ask.call("one_f_one_b", M, K) for M, K in cases]

    def verify() -> None:
        for (M, K), reply in zip(cases, replies):
            table = learner_table(reply.value(f"one_f_one_b({M}, {K})"), M, K, None, f"1F1B, M={M}, K={K}")
            expect(len(table) == 2 * (M + K - 1),
                   f"M={M}, K={K}: 1F1B takes 2(M+K-1) = {2 * (M + K - 1)} ticks, yours {len(table)}: place every "
                   f"action at the earliest tick its stage and its dependencies allow\n{render(table, K)}")
            for j in range(K):
                held, peak = 0, 0
                for tick in table:
                    for a in tick:
                        if a.stage == j:
                            held += 1 if a.kind == "F" else -1
                            peak = max(peak, held)
                expect(peak <= min(K - j, M),
                       f"M={M}, K={K}: stage {j} holds up to {peak} micro-batches at once, 1F1B holds at most "
                       f"{min(K - j, M)}: start each backward as soon as the warm-up is done\n{render(table, K)}")

    return verify

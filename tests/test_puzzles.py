"""Assignment 07's puzzles: exact targets, a proven floor, a ladder drawn per student that library schedules miss.

Tightness of the grader's search rests on its A* bound never overestimating;
the brute-force tests check it against every rule-abiding schedule on puzzles
small enough to enumerate, with and without split backward, memory caps and
virtual stages. The ladder tests draw many student ids and check, for every
distinct puzzle drawn: the printed lower bound is at most the target; the
search stays fast; no schedule the learner already has reaches the target
within the cap; another student's tables fail; and nothing in ``gpipe_core``
hands out the search or its answers.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from autograder.judge.puzzle_search import reference_orders, solve, target
from gpipe_core.puzzle_ladder import PRACTICE_ID, RUNGS, draw, ladder, lower_bound
from gpipe_core.puzzles import Puzzle, evaluate, report, score, shortfalls, table_from_orders, table_from_text
from gpipe_core.schedule import Action
from gpipe_core.simulate import peak_memory, times


def _device_orders(p: Puzzle, device: int, fifo: bool = True) -> list[list[Action]]:
    """Every order of one device's actions (keeping each kind in micro-batch order per stage if ``fifo``)."""
    stages = [s for s in range(p.S) if p.placement[s] == device]
    kinds = ("F", "I", "W") if p.split else ("F", "B")
    out: list[list[Action]] = []

    def walk(done: dict, order: list[Action]) -> None:
        if len(order) == len(stages) * len(kinds) * p.M:
            out.append(list(order))
            return
        for s in stages:
            for k in kinds:
                i = done[s, k]
                if i == p.M:
                    continue
                before = {"F": None, "I": "F", "B": "F", "W": "I"}[k]
                if before and done[s, before] <= i:
                    continue
                done[s, k] += 1
                order.append(Action(k, i, s))
                walk(done, order)
                order.pop()
                done[s, k] -= 1

    if fifo:
        walk({(s, k): 0 for s in stages for k in kinds}, [])
    else:  # any order in which each micro-batch's F comes before its I (or B), and its I before its W
        actions = [Action(k, i, s) for s in stages for k in kinds for i in range(p.M)]
        for order in itertools.permutations(actions):
            pos = {a: n for n, a in enumerate(order)}
            if all(pos[Action("F", a.microbatch, a.stage)] < pos[a] for a in order if a.kind in "IB") and all(
                    pos[Action("I", a.microbatch, a.stage)] < pos[a] for a in order if a.kind == "W"):
                out.append(list(order))
    return [o for o in out if p.cap is None or _peak(o) <= p.cap]


def _peak(order: list[Action]) -> int:
    held = peak = 0
    for a in order:
        held += {"F": 1, "I": 0, "B": -1, "W": -1}[a.kind]
        peak = max(peak, held)
    return peak


def _brute_force(p: Puzzle, fifo: bool = True) -> int:
    best = None
    for orders in itertools.product(*[_device_orders(p, d, fifo) for d in range(p.K)]):
        try:
            got = score(p, [list(o) for o in orders])
        except ValueError:  # deadlock
            continue
        if p.cap is not None and max(got.peak) > p.cap:
            continue
        best = got.time if best is None else min(best, got.time)
    assert best is not None
    return best


SMALL = [
    Puzzle("2x2", K=2, M=2),
    Puzzle("2x3 cap1", K=2, M=3, cap=1),
    Puzzle("2x3 cap2", K=2, M=3, cap=2),
    Puzzle("3x2", K=3, M=2, F=1, B=3),
    Puzzle("2x2 split", K=2, M=2, split=True),
    Puzzle("2x2 split cap1", K=2, M=2, split=True, cap=1),
    Puzzle("2x3 split", K=2, M=3, split=True),
    Puzzle("3x3 split cap2", K=3, M=3, split=True, cap=2),
    Puzzle("3x3 cap2", K=3, M=3, cap=2),
    Puzzle("2x2 uneven split", K=2, M=2, I=2, W=1, B=3, split=True, cap=2),
    Puzzle("2x2 loop cap2", K=2, M=2, V=2, cap=2),
    Puzzle("2x2 v cap2", K=2, M=2, V=2, shape="v", cap=2),
    Puzzle("2x1 v split cap2", K=2, M=1, V=2, shape="v", split=True, cap=2),
]


@pytest.mark.parametrize("p", SMALL, ids=lambda p: p.name)
def test_search_equals_brute_force(p: Puzzle) -> None:
    best, orders = solve(p)
    assert best == _brute_force(p)
    got = score(p, orders)
    assert got.time == best
    assert p.cap is None or max(got.peak) <= p.cap


@pytest.mark.parametrize("p", [Puzzle("2x2 split", K=2, M=2, split=True), Puzzle("2x3", K=2, M=3),
                               Puzzle("3x2 split", K=3, M=2, split=True), Puzzle("2x3 cap2", K=2, M=3, cap=2),
                               Puzzle("2x2 uneven split", K=2, M=2, I=2, W=1, B=3, split=True)],
                         ids=lambda p: p.name)
def test_micro_batch_order_rule_costs_nothing(p: Puzzle) -> None:
    # micro-batches are identical: running them out of order on a stage never beats the rule's best
    assert _brute_force(p, fifo=False) == solve(p)[0]


@pytest.mark.parametrize("p", [Puzzle("v", K=3, M=4, V=2, shape="v", split=True, cap=4),
                               Puzzle("loop", K=2, M=3, V=2, cap=3), Puzzle("fb", K=3, M=5, F=2, B=3, cap=2)],
                         ids=lambda p: p.name)
def test_reference_orders_reach_the_target_and_the_simulator_agrees(p: Puzzle) -> None:
    table = table_from_orders(p, reference_orders(p))
    got = evaluate(p, table)
    assert got.time == target(p) and max(got.peak) <= p.cap
    assert max(end for _, end in times(table, p.K, p.costs, placement=p.placement).values()) == got.time
    assert [int(x) for x in peak_memory(table, p.K, costs=p.costs, placement=p.placement)] == list(got.peak)


def test_closed_forms_without_cap() -> None:
    # F/B only, no cap: 1F1B's (M+K-1)(F+B) is optimal; split, no cap: the parallelogram (K-1)F + M(F+I+W).
    assert target(Puzzle("a", K=3, M=6)) == (6 + 3 - 1) * 3
    assert target(Puzzle("b", K=4, M=8, split=True)) == 3 * 1 + 8 * 3
    assert lower_bound(Puzzle("a", K=3, M=6)) == (6 + 3 - 1) * 3  # the floor is tight where nothing binds


def test_caps_bind() -> None:
    loose, tight = Puzzle("l", K=4, M=8, cap=4), Puzzle("t", K=4, M=8, cap=3)
    assert target(tight) > target(loose)
    assert lower_bound(Puzzle("t2", K=4, M=8, cap=2)) > lower_bound(loose)  # the memory floor sees a tight cap


def test_impossible_cap_is_named() -> None:
    # a V device holds stage 0 and stage 2K-1: micro-batch 0 is held twice before its first backward
    with pytest.raises(ValueError, match="memory cap 1 is too small"):
        solve(Puzzle("v1", K=2, M=1, V=2, shape="v", split=True, cap=1))


def test_v_placement_puts_the_turn_on_one_device() -> None:
    assert Puzzle("v", K=3, M=1, V=2, shape="v").placement == [0, 1, 2, 2, 1, 0]
    assert Puzzle("l", K=3, M=1, V=2).placement == [0, 1, 2, 0, 1, 2]


# -- the ladder, drawn per student ------------------------------------------------------------------------

IDS = [f"student-{i}" for i in range(60)] + [PRACTICE_ID, "honest-jun", "correct"]
STATES = 30_000  # the search's state budget per drawn puzzle: the largest needs under 20,000 (0.1-0.5 s of CPU)


def _drawn() -> list[tuple[int, Puzzle]]:
    out: dict[Puzzle, int] = {}
    for student in IDS:
        for n in range(1, len(RUNGS) + 1):
            out.setdefault(draw(student, n), n)
    return [(n, p) for p, n in out.items()]


DRAWN = _drawn()


def test_the_same_id_draws_the_same_ladder_and_ids_differ() -> None:
    assert ladder("alice") == ladder("alice") == [draw("alice", n) for n in range(1, 10)]
    assert ladder("alice") != ladder("bob")
    assert len({p for _, p in DRAWN}) > 100  # many distinct puzzles, not a handful a class could share
    with pytest.raises(ValueError, match="student id"):
        ladder("  ")


@pytest.mark.parametrize("rung", range(1, len(RUNGS) + 1))
def test_every_drawn_puzzle_is_searched_within_budget_above_its_floor_and_missed_by_library_schedules(
        rung: int) -> None:
    from gpipe_core.schedule import one_f_one_b_schedule
    from gpipe_core.zoo import interleaved_schedule, zb_h1_schedule

    for n, p in DRAWN:
        if n != rung:
            continue
        best, orders = solve(p, max_states=STATES)
        assert lower_bound(p) <= best, p
        got = evaluate(p, table_from_orders(p, orders))
        assert got.time == best and (p.cap is None or max(got.peak) <= p.cap)
        for build in (one_f_one_b_schedule, zb_h1_schedule, interleaved_schedule):  # what the learner already has
            try:
                table = build(p.M, p.K)
            except ValueError:
                continue
            assert shortfalls(p, table, best), f"{build.__name__} solves {p}"


def test_another_students_answers_fail() -> None:
    mine, theirs = ladder("alice"), ladder("bob-0")  # two ids whose nine puzzles all differ
    differ = [n for n in range(9) if mine[n] != theirs[n]]
    assert len(differ) == 9
    for n in differ:
        pasted = reference_orders(theirs[n])  # bob-0's best orders, as alice would paste them
        try:
            table = table_from_orders(mine[n], pasted)
        except ValueError as exc:  # another K or another placement: the table cannot even be built
            assert "another" in str(exc) or "device" in str(exc), exc
            continue
        missed = shortfalls(mine[n], table, target(mine[n]))
        assert missed, f"rung {n + 1}: bob-0's table meets alice's puzzle {mine[n]}"


def test_a_table_for_another_puzzle_is_named_as_such() -> None:
    p, q = Puzzle("mine", K=3, M=5, cap=2), Puzzle("theirs", K=3, M=6, cap=2)
    table = table_from_orders(q, reference_orders(q))
    (missed,) = shortfalls(p, table, target(p))
    assert "written for another puzzle" in missed and "M=5" in missed
    with pytest.raises(ValueError, match="written for another puzzle"):
        table_from_text(Puzzle("four", K=4, M=5), ["F0 B0", "F0 B0", "F0 B0"])


def test_gpipe_core_hands_out_no_search_and_no_targets() -> None:
    import importlib
    import pkgutil

    import gpipe_core

    names = [m.name for m in pkgutil.walk_packages(gpipe_core.__path__, "gpipe_core.")]
    assert not [n for n in names if "search" in n or "target" in n]
    for name in names:
        if name.startswith("gpipe_core.distributed"):
            continue  # needs torch.distributed set up; it has no puzzle code
        module = importlib.import_module(name)
        found = [a for a in vars(module) if a in {"solve", "target", "TARGETS", "reference_orders", "write_targets"}]
        assert not found, f"{name} exposes {found}"


def test_report_and_shortfalls_name_every_criterion_missed() -> None:
    from gpipe_core.schedule import one_f_one_b_schedule

    p = Puzzle("capped", K=3, M=5, cap=2)
    table = one_f_one_b_schedule(5, 3)  # fast, but device 0 holds 3
    missed = shortfalls(p, table, target(p))
    assert len(missed) == 1 and missed[0].startswith("memory: device 0 holds 3")
    assert "not the fault" in missed[0]
    line = report(p, table)
    assert "idle per device" in line and f"proven lower bound {lower_bound(p)}" in line and "not yet" in line
    slow = table_from_text(p, ["F0 B0 F1 B1 F2 B2 F3 B3 F4 B4"] * 3)  # one micro-batch at a time
    (late,) = shortfalls(p, slow, target(p))
    assert late.startswith("time: step time") and f"the target is {target(p)}" in late and "idle per device" in late
    assert report(p, slow).endswith("above the lower bound")
    bad = [[a] for a in [Action("F", 1, 0)]]
    assert shortfalls(p, bad, None)[0].startswith(("puzzle:", "rules:"))


def test_solution_notebook_reaches_every_target_for_any_id() -> None:
    ns = _solution_namespace()
    for student in (PRACTICE_ID, "student-7"):
        for n, p in enumerate(ladder(student), start=1):
            got = evaluate(p, ns[f"puzzle_{n}"](p))
            assert got.time == target(p), f"{student}, puzzle {n}: {got.time} != {target(p)}"
            assert p.cap is None or max(got.peak) <= p.cap


def test_the_judge_hands_the_graded_students_puzzle_to_solve_puzzle() -> None:
    import random

    from autograder.judge.base import Ask
    from autograder.judge.grade import judge_module
    from autograder.judge.probe_codec import encode

    checks = judge_module("07_beat_the_bubble").CHECKS
    ask = Ask()
    ask.student = "alice"
    checks["test_puzzle_4"](ask, random.Random(0))
    (call,) = ask.calls
    assert call["params"]["fn"] == "solve_puzzle"
    assert call["params"]["args"] == encode([4, checks_statement(draw("alice", 4))])


def checks_statement(p: Puzzle) -> dict:
    from dataclasses import asdict

    return asdict(p)


def _solution_namespace() -> dict:
    """The solution notebook's imports and answer cells, run as a script (no outputs, no widgets)."""
    import nbformat

    nb = nbformat.read(Path(__file__).resolve().parents[1] / "solutions/07_beat_the_bubble/beat_the_bubble.ipynb",
                       as_version=4)
    ns: dict = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        is_imports = cell.cell_type == "code" and "from gpipe_core.puzzles import" in cell.source and not meta
        if is_imports or meta.get("solution"):
            exec(compile(cell.source, meta.get("grade_id", "imports"), "exec"), ns)  # noqa: S102 (our own notebook)
    return ns


def test_published_targets_make_the_visible_test_name_the_graders_time_criterion() -> None:
    """With MY_TARGETS set, a table within the cap but slower than the target fails the visible test in the
    grader's words ("time: step time ..., the target is ...")."""
    import nbformat

    nb = nbformat.read(Path(__file__).resolve().parents[1] / "solutions/07_beat_the_bubble/beat_the_bubble.ipynb",
                       as_version=4)
    ns = _solution_namespace()
    ns["MY_TARGETS"] = [target(p) for p in ladder(PRACTICE_ID)]
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells}
    exec(compile(cells["puzzle_tools"], "puzzle_tools", "exec"), ns)  # noqa: S102 (our own notebook)
    p = ns["MINE"][0]
    ns["puzzle_1"] = lambda p: table_from_text(p, [" ".join(f"F{i} B{i}" for i in range(p.M))] * p.K)  # one at a time
    with pytest.raises(AssertionError, match=r"time: step time \d+, the target is \d+"):
        exec(compile(cells["test_puzzle_1"], "test_puzzle_1", "exec"), ns)  # noqa: S102
    assert shortfalls(p, ns["puzzle_1"](p), target(p))[0].startswith("time: step time")

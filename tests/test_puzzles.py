"""Assignment 07's ladder: drawn per student, a proven floor, library schedules miss it, answers stay private.

The ladder tests draw many student ids and check, for every distinct puzzle
drawn: the printed lower bound is at most the target; the grader's search
stays within its state budget; no schedule the learner already has reaches the
target within the cap; another student's tables fail; and nothing in
``gpipe_core`` hands out the search or its answers. The notebook's own
reporting names every criterion in the grader's words.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.judge.puzzle_search import reference_orders, solve, target
from gpipe_core.course.puzzle_ladder import PRACTICE_ID, RUNGS, draw, ladder, lower_bound
from gpipe_core.course.puzzles import Puzzle, evaluate, report, shortfalls, table_from_orders, table_from_text
from gpipe_core.schedules.schedule import Action

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
    from gpipe_core.schedules.schedule import one_f_one_b_schedule
    from gpipe_core.schedules.zoo import interleaved_schedule, zb_h1_schedule

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


def test_gpipe_core_hands_out_no_search_and_no_orders_only_target_values() -> None:
    import importlib
    import pkgutil

    import gpipe_core
    from gpipe_core.course import puzzle_targets

    names = [m.name for m in pkgutil.walk_packages(gpipe_core.__path__, "gpipe_core.")]
    assert not [n for n in names if "search" in n]
    assert [n for n in names if "target" in n] == ["gpipe_core.course.puzzle_targets"]
    shipped = {a: v for a, v in vars(puzzle_targets).items() if not a.startswith("__") and a != "annotations"}
    assert list(shipped) == ["TARGETS"], f"puzzle_targets holds more than values: {sorted(shipped)}"
    assert all(type(k) is str and type(v) is int for k, v in puzzle_targets.TARGETS.items())  # no orders, no tables
    for name in names:
        if name.startswith("gpipe_core.distributed"):
            continue  # needs torch.distributed set up; it has no puzzle code
        module = importlib.import_module(name)
        found = [a for a in vars(module) if a in {"solve", "target", "reference_orders", "write_targets"}
                 or (a == "TARGETS" and name != "gpipe_core.course.puzzle_targets")]
        assert not found, f"{name} exposes {found}"


def test_report_and_shortfalls_name_every_criterion_missed() -> None:
    from gpipe_core.schedules.schedule import one_f_one_b_schedule

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


def test_the_visible_test_names_the_graders_time_criterion_against_the_shipped_target() -> None:
    """With no setting at all, a table within the cap but slower than the target fails the visible test in the
    grader's words ("time: step time ..., the target is ..."), and show() prints the target and the lower bound."""
    import contextlib
    import io

    import nbformat

    nb = nbformat.read(Path(__file__).resolve().parents[1] / "solutions/07_beat_the_bubble/beat_the_bubble.ipynb",
                       as_version=4)
    ns = _solution_namespace()
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells}
    exec(compile(cells["puzzle_tools"], "puzzle_tools", "exec"), ns)  # noqa: S102 (our own notebook)
    p = ns["MINE"][0]
    assert [ns["target_of"](n) for n in range(1, 10)] == [target(q) for q in ladder(PRACTICE_ID)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ns["show"](1)
    assert f"target: {target(p)} " in out.getvalue() and f"proven lower bound: {lower_bound(p)} " in out.getvalue()
    ns["puzzle_1"] = lambda p: table_from_text(p, [" ".join(f"F{i} B{i}" for i in range(p.M))] * p.K)  # one at a time
    with pytest.raises(AssertionError, match=rf"time: step time \d+, the target is {target(p)} "):
        exec(compile(cells["test_puzzle_1"], "test_puzzle_1", "exec"), ns)  # noqa: S102
    assert shortfalls(p, ns["puzzle_1"](p), target(p))[0].startswith("time: step time")

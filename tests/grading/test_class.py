"""The instructor's grading cycle, end to end, on a generated class of the real assignments.

One class (autograder/selftest/fakeclass.py) is graded once with ``python -m autograder
all`` (the ``graded`` fixture); every test reads that run: correct work scores
full marks, untouched stubs 0, each planted mistake loses exactly its test
cells, broken submissions (loops, ``os._exit``, memory hogs, missing or corrupt
notebooks, edited or deleted tests) get the right grade and a log line saying
why, the gradebook is intact, feedback exists for everyone, and running again
changes nothing. The same run grades the hostile class (test_hostile.py).
"""

from __future__ import annotations

import csv
import re
import sqlite3
from pathlib import Path

import nbformat
import pytest
from classroom import (
    ALL,
    EXPECTED,
    Graded,
    case,
    cli,
    lost,
    parse_lines,
    present,
    read_gradebook,
    workspace,
)

from autograder import notebook_names
from autograder.selftest import fakeclass

pytestmark = pytest.mark.timeout(1800)  # a watchdog: the first test to need the graded class pays for grading it


@pytest.mark.parametrize("assignment", ALL)
def test_correct_work_scores_full_marks(assignment: str, graded: Graded) -> None:
    present(assignment)
    failed = lost(graded, assignment, "correct")
    assert not failed, f"{assignment}: the solution fails {sorted(failed)}: {graded.lines.get((assignment, 'correct'))}"
    score, top = graded.scores[(assignment, "correct")]
    assert score == top > 0


@pytest.mark.parametrize("assignment", ALL)
def test_feedback_keeps_the_learners_saved_outputs_in_plain_kinds(assignment: str, env: dict[str, str],
                                                                  graded: Graded) -> None:
    """Grading runs no notebook again by default: the graded copy shows what the learner saved, reduced."""
    present(assignment)
    folder = Path(env["GPIPE_INSTRUCTOR_DIR"]) / "autograded" / "correct" / assignment
    for nb in notebook_names(assignment):
        cell = next(c for c in nbformat.read(folder / f"{nb}.ipynb", as_version=4).cells if c.cell_type == "code")
        kinds = [(o["output_type"], sorted(o.get("data", {}))) for o in cell.outputs]
        assert kinds == [("stream", []), ("display_data", ["text/plain"]), ("execute_result", ["text/plain"])], kinds
        assert cell.outputs[0]["text"] == fakeclass.SAVED + "\n"


@pytest.mark.parametrize("assignment", ALL)
def test_untouched_stubs_score_zero(assignment: str, graded: Graded) -> None:
    present(assignment)
    assert lost(graded, assignment, "untouched") == set(graded.cells[(assignment, "untouched")])
    assert graded.scores[(assignment, "untouched")][0] == 0


@pytest.mark.parametrize("assignment", ALL)
def test_each_planted_mistake_loses_exactly_its_tests(assignment: str, graded: Graded) -> None:
    present(assignment)
    mistakes = fakeclass.planted(assignment)
    if assignment in EXPECTED:
        assert len(mistakes) >= 2, f"autograder/planted/{assignment}.json needs at least two planted mistakes"
    for i, mistake in enumerate(mistakes, 1):
        student = f"mistake{i}"
        if not any(c.assignment == assignment and c.student == student for c in graded.cases):
            assert i > 1 and not fakeclass.needs_probe(mistake), f"{assignment} {mistake['name']} is not in the class"
            continue  # judged in-process by tests/test_judge.py::test_planted_mistakes_lose_exactly_their_cells
        cells = graded.cells[(assignment, student)]
        unknown = set(mistake["loses"]) - set(cells)
        assert not unknown, f"{assignment} {mistake['name']}: 'loses' names no test cell {sorted(unknown)}"
        got = lost(graded, assignment, student)
        assert got == set(mistake["loses"]), (
            f"{assignment} planted mistake {mistake['name']!r} should fail exactly {sorted(mistake['loses'])} "
            f"but failed {sorted(got)}: {graded.lines.get((assignment, student))}")
        score, top = graded.scores[(assignment, student)]
        assert score == top - sum(cells[name][1] for name in mistake["loses"])


def hard_cases() -> list[str]:
    return ["blank-exercise", "endless-loop", "stubborn-loop", "raises", "exits", "kills-parent", "memory-hog",
            "deleted-test",
            "reordered", "edited-test", "missing", "not-json", "extra-files", "renamed", "flat-layout"]


@pytest.mark.parametrize("student", hard_cases())
def test_broken_submissions_get_the_right_grade_and_a_reason(student: str, graded: Graded) -> None:
    c = next((c for c in graded.cases if c.student == student), None)
    assert c is not None, f"the generated class has no {student}"
    got = lost(graded, c.assignment, student)
    tests = set(graded.cells[(c.assignment, student)])
    line = graded.lines.get((c.assignment, student), "")
    why = f"{student} ({c.description}): {line}"
    if c.zero:
        assert got == tests and graded.scores[(c.assignment, student)][0] == 0, why
    if c.lost is not None:
        assert got == set(c.lost), f"expected to lose exactly {sorted(c.lost)}, lost {sorted(got)}; {why}"
    else:
        assert c.at_least <= got != tests, f"a broken exercise must cost its own tests and no others; {why}"
    if c.same_as:
        assert got == lost(graded, c.assignment, c.same_as), f"should score like {c.same_as}; {why}"
    for code in c.codes:
        assert code in line, f"the log line should say {code}; {why}"
    for code in c.run_codes:  # only a notebook run says these; grading makes none unless --run-notebooks
        assert code not in line, f"the log line says {code} although no notebook ran; {why}"


def test_class_is_big_enough_and_every_submission_has_one_log_line(graded: Graded) -> None:
    assert len(graded.cases) >= 30
    missing = [(c.assignment, c.student) for c in graded.cases if (c.assignment, c.student) not in graded.lines]
    assert not missing, f"no log line for {missing}:\n{graded.output[-3000:]}"
    honest = {(c.assignment, c.student) for c in graded.cases}
    for (a, s), line in graded.lines.items():
        if (a, s) not in honest:
            continue
        score, top = graded.scores[(a, s)]
        assert f"  {score:g}/{top:g}  " in line, f"log line disagrees with the gradebook: {line}"
        assert line.split("  ", 3)[3].startswith("ok") == (score == top and not case(graded, a, s).codes), line


def test_no_submission_takes_its_grader_down(graded: Graded) -> None:
    errors = sorted(s for (a, s), line in graded.lines.items() if "GRADER_ERROR" in line)
    assert errors == [] and graded.status == 0, (errors, graded.output[-3000:])


def test_gradebook_is_intact(env: dict[str, str], graded: Graded) -> None:
    db = Path(env["GPIPE_INSTRUCTOR_DIR"]) / "gradebook.db"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        nulls = con.execute("SELECT COUNT(*) FROM grade WHERE auto_score IS NULL AND manual_score IS NULL")
        assert nulls.fetchone()[0] == 0, "some grade has no score (a test cell was neither run nor zeroed)"
        dupes = con.execute("SELECT COUNT(*) FROM submitted_assignment GROUP BY assignment_id, student_id "
                            "HAVING COUNT(*) > 1").fetchall()
        assert not dupes
    everyone = {(c.assignment, c.student) for c in graded.cases} | {(a.assignment, a.student) for a in graded.attacks}
    assert set(graded.scores) == everyone


def test_feedback_html_for_every_student(env: dict[str, str], graded: Graded) -> None:
    root = Path(env["GPIPE_INSTRUCTOR_DIR"]) / "feedback"
    for c in graded.cases:
        for nb in notebook_names(c.assignment):
            page = root / c.student / c.assignment / f"{nb}.html"
            assert page.exists(), f"no feedback for {c.student} on {c.assignment}"
            shown = re.search(r"Score: (\d+(?:\.\d+)?) / (\d+(?:\.\d+)?)", page.read_text())
            assert shown, f"{page} shows no score"
            assert (float(shown[1]), float(shown[2])) == graded.scores[(c.assignment, c.student)], page


def test_feedback_names_each_failed_test_without_its_source(env: dict[str, str], graded: Graded) -> None:
    root = Path(env["GPIPE_INSTRUCTOR_DIR"]) / "feedback"
    for c in graded.cases:
        if not c.student.startswith("mistake"):
            continue
        text = "".join(p.read_text() for p in (root / c.student / c.assignment).glob("*.html"))
        for cell in lost(graded, c.assignment, c.student):
            assert f"Grader: {cell}: 0 / " in text, f"{c.student} on {c.assignment}: feedback does not name {cell}"
        for secret in ("BEGIN HIDDEN TESTS", "BEGIN SOLUTION", "autograder.judge"):
            assert secret not in text, f"{c.student} on {c.assignment}: feedback shows {secret!r}"


def test_export_matches_the_gradebook(env: dict[str, str], graded: Graded) -> None:
    with (workspace(env) / "grades.csv").open() as fh:
        rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(fh)}
    for key, (score, top) in graded.scores.items():
        assert float(rows[key]["score"]) == score and float(rows[key]["max_score"]) == top
        assert rows[key]["submitted"] == "yes"


def test_grading_again_changes_nothing(env: dict[str, str], graded: Graded) -> None:
    root = Path(env["GPIPE_INSTRUCTOR_DIR"]) / "autograded"
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.ipynb")}
    cli("collect", workspace(env) / "class", env=env)
    proc = cli("autograde", "--jobs", "2", env=env)
    again = parse_lines(proc.stdout)
    strip = re.compile(r"  \[[\d.]+ s\]$")
    assert {k: strip.sub("", v) for k, v in again.items()} == {k: strip.sub("", v) for k, v in graded.lines.items()}
    assert read_gradebook(env) == (graded.cells, graded.scores)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.ipynb")} == before, "a graded submission was regraded"

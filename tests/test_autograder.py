"""The instructor's grading cycle, end to end, on the real assignments.

One generated class (autograder/fakeclass.py) is graded once with
``python -m autograder all`` in a temporary instructor folder; every test
below reads that one run: correct work scores full marks, untouched stubs 0,
each planted mistake loses exactly its test cells, broken submissions (loops,
``os._exit``, memory hogs, missing or corrupt notebooks, edited or deleted
tests) get the right grade and a log line saying why, the gradebook is
intact, feedback exists for everyone, and running again changes nothing.
Release checks (no solution or hidden test leaks, committed notebooks equal a
fresh generation, ``nbgrader validate --invert``) run on a fresh generation.
"""

from __future__ import annotations

import csv
import os
import re
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from autograder import assignments, fakeclass, notebook_names

ROOT = Path(__file__).resolve().parents[1]


EXPECTED = ["01_microbatching", "02_partitioner", "03_scheduler", "04_recomputation", "05_assembling"]
ALL = sorted(set(EXPECTED) | set(assignments()))
SMALL = "02_partitioner"  # gets the hard cases: few cells, fast, three exercises
CLASS_BOUND_S = 900  # documented in autograder/README.md ("How long grading takes")
pytestmark = pytest.mark.timeout(1800)  # the first test to need the graded class pays for grading it
LINE = re.compile(r"^(\S+)  (\S+)  ([\d.]+)/([\d.]+)  (.*?)(?:  \[[\d.]+ s\])?$")


def present(assignment: str) -> None:
    if assignment not in assignments():
        pytest.skip(f"solutions/{assignment}/ has no notebook yet")


def cli(*args: object, env: dict[str, str], status: int = 0, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "autograder", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    command = " ".join(map(str, args))
    assert proc.returncode == status, (
        f"python -m autograder {command} exited with {proc.returncode}, expected {status}:\n"
        f"{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    workspace = tmp_path_factory.mktemp("grading")
    return dict(os.environ, GPIPE_INSTRUCTOR_DIR=str(workspace / "instructor"), PYTHONUNBUFFERED="1",
                GPIPE_TEST_WORKSPACE=str(workspace))


def workspace(env: dict[str, str]) -> Path:
    return Path(env["GPIPE_TEST_WORKSPACE"])


@pytest.fixture(scope="module")
def released(env: dict[str, str]) -> Path:
    """A fresh ``nbgrader generate_assignment`` of every assignment, outside notebooks/."""
    into = workspace(env) / "released"
    if assignments():
        cli("release", "--into", into, env=env)
    return into


# ---- release ------------------------------------------------------------------------------------

def _blocks(source: str, begin: str, end: str) -> tuple[list[str], list[str]]:
    """Lines inside ``begin``/``end`` marker blocks, and the lines outside them."""
    inside, outside, depth = [], [], False
    for line in source.splitlines():
        if line.strip() == begin:
            depth = True
        elif line.strip() == end:
            depth = False
        else:
            (inside if depth else outside).append(line.strip())
    return inside, outside


def secrets(assignment: str, notebook: str) -> set[str]:
    """Solution and hidden-test lines specific enough that seeing them in a release is a leak."""
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{notebook}.ipynb", as_version=4)
    hidden, visible = set(), set()
    for cell in nb.cells:
        for begin, end in (("### BEGIN SOLUTION", "### END SOLUTION"),
                           ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")):
            inside, outside = _blocks(cell.source, begin, end)
            hidden.update(inside)
            visible.update(outside)
    return {ln for ln in hidden - visible if len(ln) >= 16}


@pytest.mark.parametrize("assignment", ALL)
@pytest.mark.parametrize("tree", ["fresh", "committed"])
def test_release_has_no_solutions_or_hidden_tests(tree: str, assignment: str, released: Path) -> None:
    present(assignment)
    for nb in notebook_names(assignment):
        path = (released if tree == "fresh" else ROOT / "notebooks") / assignment / f"{nb}.ipynb"
        assert path.exists(), f"no {path}; run: python -m autograder release {assignment}"
        text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in text, f"{assignment}/{nb}: '{marker}' reached the learner's notebook"
        leaked = sorted(ln for ln in secrets(assignment, nb) if ln in text)
        assert not leaked, f"{assignment}/{nb}: solution or hidden-test lines reached the release: {leaked[:5]}"
        assert "raise NotImplementedError()" in text, f"{assignment}/{nb}: no exercise stub in the release"


def _shape(path: Path) -> list[tuple]:
    nb = nbformat.read(path, as_version=4)
    keys = ("grade_id", "points", "locked", "grade", "solution")
    return [(c.cell_type, c.source, tuple(c.metadata.get("nbgrader", {}).get(k) for k in keys)) for c in nb.cells]


@pytest.mark.parametrize("assignment", ALL)
def test_committed_notebooks_equal_a_fresh_generation(assignment: str, released: Path) -> None:
    present(assignment)
    for nb in notebook_names(assignment):
        committed = ROOT / "notebooks" / assignment / f"{nb}.ipynb"
        fix = f"regenerate it: python -m autograder release {assignment}"
        assert committed.exists(), f"notebooks/{assignment}/{nb}.ipynb is missing; {fix}"
        want, got = _shape(released / assignment / f"{nb}.ipynb"), _shape(committed)
        drift = [i for i, (w, g) in enumerate(zip(want, got)) if w != g]
        assert len(want) == len(got) and not drift, (
            f"notebooks/{assignment}/{nb}.ipynb has drifted from solutions/{assignment}/{nb}.ipynb "
            f"({len(got)} vs {len(want)} cells; first differing cell: {(drift or [min(len(want), len(got))])[0]}); "
            f"{fix}")


@pytest.fixture(scope="module")
def validated(env: dict[str, str], released: Path) -> dict[str, str]:
    """``nbgrader validate --invert`` over every released notebook, in one call: output per notebook."""
    paths = [released / a / f"{nb}.ipynb" for a in assignments() for nb in notebook_names(a)]
    if not paths:
        return {}
    proc = subprocess.run([Path(sys.executable).parent / "nbgrader", "validate", "--invert", *map(str, paths)],
                          cwd=ROOT / "autograder", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600)
    chunks = re.split(r"^.*Validating '(.*)'\s*$", proc.stdout, flags=re.M)
    return {Path(chunks[i]).parent.name: chunks[i + 1] for i in range(1, len(chunks) - 1, 2)} | {
        "_all": proc.stdout}


@pytest.mark.parametrize("assignment", ALL)
def test_validate_invert_every_test_fails_on_stubs(assignment: str, validated: dict[str, str]) -> None:
    present(assignment)
    out = validated.get(assignment)
    assert out is not None, f"nbgrader validate did not report on {assignment}:\n{validated.get('_all')}"
    assert "Success! The notebook does not pass any tests." in out, (
        f"{assignment}: some graded test passes on the untouched release; make it fail on "
        f"`raise NotImplementedError()`:\n{out}")


# ---- the class ----------------------------------------------------------------------------------

@dataclass
class Graded:
    cases: list[fakeclass.Case]
    lines: dict[tuple[str, str], str]  # (assignment, student) -> log line
    cells: dict[tuple[str, str], dict[str, tuple[float, float]]]  # -> grade_id -> (score, max)
    scores: dict[tuple[str, str], tuple[float, float]]
    seconds: float
    output: str


def read_gradebook(env: dict[str, str]) -> tuple[dict, dict]:
    from nbgrader.api import Gradebook

    cells, scores = {}, {}
    db = f"sqlite:///{env['GPIPE_INSTRUCTOR_DIR']}/gradebook.db"
    with Gradebook(db, "gpipe-course") as gb:
        for a in gb.assignments:
            for sub in gb.assignment_submissions(a.name):
                key = (a.name, sub.student.id)
                scores[key] = (sub.score, sub.max_score)
                cells[key] = {g.name: (g.score, g.max_score) for nb in sub.notebooks for g in nb.grades}
    return cells, scores


def parse_lines(output: str) -> dict[tuple[str, str], str]:
    lines = {}
    for line in output.splitlines():
        m = LINE.match(line)
        if m and m.group(1) in ALL:
            assert (m.group(1), m.group(2)) not in lines, f"two log lines for {m.group(2)} on {m.group(1)}"
            lines[(m.group(1), m.group(2))] = line
    return lines


@pytest.fixture(scope="module")
def graded(env: dict[str, str], released: Path) -> Graded:
    small = SMALL if SMALL in assignments() else next((a for a in assignments() if fakeclass.planted(a)), None)
    if small is None:
        pytest.skip("no assignment with planted mistakes yet")
    folder = workspace(env) / "class"
    cases = fakeclass.build(folder, released, assignments(), small)
    start = time.monotonic()
    # status 2: one submission (kills-grader) took its grading process down, as it should be reported
    proc = cli("all", folder, "--jobs", "2", "--out", workspace(env) / "grades.csv", env=env, status=2)
    seconds = time.monotonic() - start
    cells, scores = read_gradebook(env)
    return Graded(cases, parse_lines(proc.stdout), cells, scores, seconds, proc.stdout + proc.stderr)


def lost(graded: Graded, assignment: str, student: str) -> set[str]:
    cells = graded.cells.get((assignment, student))
    assert cells is not None, f"no grades for {student} on {assignment}:\n{graded.output[-3000:]}"
    return {name for name, (score, top) in cells.items() if score < top}


def case(graded: Graded, assignment: str, student: str) -> fakeclass.Case:
    return next(c for c in graded.cases if c.assignment == assignment and c.student == student)


@pytest.mark.parametrize("assignment", ALL)
def test_correct_work_scores_full_marks(assignment: str, graded: Graded) -> None:
    present(assignment)
    failed = lost(graded, assignment, "correct")
    assert not failed, f"{assignment}: the solution fails {sorted(failed)}: {graded.lines.get((assignment, 'correct'))}"
    score, top = graded.scores[(assignment, "correct")]
    assert score == top > 0


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
    return ["blank-exercise", "endless-loop", "stubborn-loop", "raises", "exits", "kills-grader", "memory-hog",
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


def test_class_is_big_enough_and_every_submission_has_one_log_line(graded: Graded) -> None:
    assert len(graded.cases) >= 30
    missing = [(c.assignment, c.student) for c in graded.cases if (c.assignment, c.student) not in graded.lines]
    assert not missing, f"no log line for {missing}:\n{graded.output[-3000:]}"
    for (a, s), line in graded.lines.items():
        score, top = graded.scores[(a, s)]
        assert f"  {score:g}/{top:g}  " in line, f"log line disagrees with the gradebook: {line}"
        assert line.split("  ", 3)[3].startswith("ok") == (score == top and not case(graded, a, s).codes), line


def test_only_the_submission_that_killed_its_grader_is_a_grader_error(graded: Graded) -> None:
    errors = sorted(s for (a, s), line in graded.lines.items() if "GRADER_ERROR" in line)
    assert errors == ["kills-grader"], errors


def test_class_grading_stays_within_its_bound(graded: Graded) -> None:
    print(f"graded {len(graded.cases)} submissions in {graded.seconds:.0f} s;",
          *[ln for ln in graded.output.splitlines() if ln.startswith(("graded ", "all: "))])
    assert graded.seconds < CLASS_BOUND_S, f"grading the class took {graded.seconds:.0f} s > {CLASS_BOUND_S} s"


def test_gradebook_is_intact(env: dict[str, str], graded: Graded) -> None:
    db = Path(env["GPIPE_INSTRUCTOR_DIR"]) / "gradebook.db"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        nulls = con.execute("SELECT COUNT(*) FROM grade WHERE auto_score IS NULL AND manual_score IS NULL")
        assert nulls.fetchone()[0] == 0, "some grade has no score (a test cell was neither run nor zeroed)"
        dupes = con.execute("SELECT COUNT(*) FROM submitted_assignment GROUP BY assignment_id, student_id "
                            "HAVING COUNT(*) > 1").fetchall()
        assert not dupes
    assert set(graded.scores) == {(c.assignment, c.student) for c in graded.cases}


def test_feedback_html_for_every_student(env: dict[str, str], graded: Graded) -> None:
    root = Path(env["GPIPE_INSTRUCTOR_DIR"]) / "feedback"
    for c in graded.cases:
        for nb in notebook_names(c.assignment):
            page = root / c.student / c.assignment / f"{nb}.html"
            assert page.exists(), f"no feedback for {c.student} on {c.assignment}"
            shown = re.search(r"Score: (\d+(?:\.\d+)?) / (\d+(?:\.\d+)?)", page.read_text())
            assert shown, f"{page} shows no score"
            assert (float(shown[1]), float(shown[2])) == graded.scores[(c.assignment, c.student)], page


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
    proc = cli("autograde", "--jobs", "2", env=env, status=2)
    again = parse_lines(proc.stdout)
    strip = re.compile(r"  \[[\d.]+ s\]$")
    assert {k: strip.sub("", v) for k, v in again.items()} == {k: strip.sub("", v) for k, v in graded.lines.items()}
    assert read_gradebook(env) == (graded.cells, graded.scores)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.ipynb")} == before, "a graded submission was regraded"

"""Adding an assignment touches its solution, its judge, its planted mistakes and its book page, nothing else.

The test writes a throwaway course tree (``GPIPE_COURSE_ROOT``) holding one
small assignment, 09_double, as exactly those four files, and runs the
instructor's commands on it as a new assignment's author would: ``release``,
``draws`` (its planted mistake loses its test at every seed), ``fake-class``
and ``all``, with ``--no-sandbox`` and in the sandbox. The grades prove that the grader found everything
about 09 in its judge file (``autograder/judge/facts.py``): its checks, its
grading view (``EXERCISES``), its limits and its review rule, with no table in
the repository naming it. The repository itself has no assignment 09.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import REPO

A, NB = "09_double", "double"

JUDGE = '''"""Judge of assignment 09 (a test's throwaway course): double and total."""

from autograder.judge.base import Checks, expect
from autograder.judge.facts import Review
from autograder.judge.view import Family
from autograder.sandbox.limits import Limits

CHECKS = Checks()
EXERCISES = {"double": Family(why="no engine function doubles a list"),
             "total": Family(("sim.theory.bubble_fraction",))}
LIMITS = Limits(cell_timeout_s=25, notebook_timeout_s=90)
REVIEW = Review(imports={"gpipe_core.theory": "uses the engine's closed forms, which 09 asks learners to derive"})


@CHECKS("test_double")
def doubled(ask, rng):
    cases = [[1, 2], []] + [[rng.randint(-9, 9) for _ in range(rng.randint(1, 6))] for _ in range(3)]
    replies = [ask.call("double", xs) for xs in cases]

    def verify():
        for xs, reply in zip(cases, replies):
            got = reply.value(f"double({xs})")
            expect(got == [2 * x for x in xs], f"double({xs}): expected {[2 * x for x in xs]}, got {got!r:.60}: "
                   "double each number, keep the list's length")
    return verify


@CHECKS("test_total")
def summed(ask, rng):
    xs = [rng.randint(0, 9) for _ in range(5)]
    reply = ask.call("total", xs)

    def verify():
        expect(reply.value(f"total({xs})") == sum(xs), f"total({xs}) must be {sum(xs)}")
    return verify
'''

SOLUTION_CELLS = [
    ("double", True, 0, 'def double(xs: list[int]) -> list[int]:\n    """Each number, twice."""\n'
                        "    ### BEGIN SOLUTION\n    return [2 * x for x in xs]\n    ### END SOLUTION\n"),
    ("test_double", False, 2, "assert double([1, 2]) == [2, 4]\n"),
    ("total", True, 0, 'def total(xs: list[int]) -> int:\n    """The sum."""\n'
                       "    ### BEGIN SOLUTION\n    return sum(xs)\n    ### END SOLUTION\n"),
    ("test_total", False, 1, "assert total([1, 2]) == 3\n"),
]
# the planted mistake: the list repeated, not doubled; its cell also imports what 09's REVIEW flags, and
# what only 05's REVIEW flags (the engine's executor), which 09's review must leave alone
WRONG = ("import gpipe_core.theory\nimport gpipe_core.runtime\n\n\ndef double(xs: list[int]) -> list[int]:\n"
         '    """Each number, twice."""\n    return xs + xs\n')


def write_assignment(root: Path) -> list[Path]:
    """The four files of assignment 09 under ``root``; returns them."""
    cells = [nbformat.v4.new_markdown_cell("# 09: doubling\n\nWrite `double` and `total`.")]
    for grade_id, solution, points, source in SOLUTION_CELLS:
        meta = {"grade_id": grade_id, "grade": not solution, "solution": solution, "locked": not solution,
                "schema_version": 3, **({"points": points} if not solution else {})}
        cells.append(nbformat.v4.new_code_cell(source, metadata={"nbgrader": meta}))
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3",
                                                                              "display_name": "Python 3"}})
    files = {f"solutions/{A}/{NB}.ipynb": nbformat.writes(notebook), f"autograder/judge/{A}.py": JUDGE,
             f"autograder/planted/{A}.json": json.dumps([{
                 "name": "repeated", "description": "repeats the list instead of doubling each number",
                 "cell": "double", "source": WRONG, "loses": ["test_double"], "visible": ["test_double"],
                 "message": "double each number"}]),
             f"book/assignments/{A}.md": "# 09: doubling\n\nThe notebook: `notebooks/09_double/double.ipynb`.\n"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return [root / name for name in files]


def autograder(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "autograder", *args], env=env, capture_output=True, text=True,
                          timeout=400, cwd=REPO)
    assert done.returncode == 0, f"autograder {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow  # nbgrader's release and a whole grading run
@pytest.mark.timeout(600)
@pytest.mark.parametrize("isolation", [pytest.param(["--no-sandbox"], id="no-sandbox"),
                                       pytest.param([], id="sandbox", marks=pytest.mark.sandbox)])
def test_a_new_assignment_is_graded_from_its_own_four_files(isolation: list[str], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert not list(REPO.glob("*/09_*")) and not list(REPO.glob("autograder/*/09_*")), "the repository has a 09"
    course = tmp_path / "course"
    written = write_assignment(course)
    assert sorted(p.relative_to(course).parts[0] for p in course.rglob("*") if p.is_file()) == \
        sorted(p.relative_to(course).parts[0] for p in written)
    env = {**os.environ, "GPIPE_COURSE_ROOT": str(course), "GPIPE_INSTRUCTOR_DIR": str(tmp_path / "instructor")}

    autograder("release", A, env=env)
    assert (course / "notebooks" / A / f"{NB}.ipynb").is_file()
    assert "lost test_double at all 3 seeds" in autograder("draws", A, "--seeds", "3", env=env)
    autograder("fake-class", str(tmp_path / "class"), "--small", "none", env=env)
    autograder("all", str(tmp_path / "class"), *isolation, "--out", str(tmp_path / "grades.csv"), env=env)

    rows = {r["student_id"]: r for r in csv.DictReader((tmp_path / "grades.csv").open())}
    assert {s: (float(r["score"]), float(r["max_score"])) for s, r in rows.items()} == {
        "correct": (3.0, 3.0), "mistake1": (1.0, 3.0), "untouched": (0.0, 3.0)}, rows
    record = json.loads((tmp_path / "instructor" / "records" / A / "mistake1.json").read_text())
    assert any("double each number" in m for m in record["checks"]["test_double"]["messages"]), record["checks"]
    flags = " ".join(record["flags"])
    assert "09 asks learners to derive" in flags, record["flags"]  # 09's own review rule
    assert "engine's own executor" not in flags, record["flags"]  # 05's rule stays 05's

    monkeypatch.setenv("GPIPE_COURSE_ROOT", str(course))  # the same facts, read in this process
    from autograder.judge import view
    from autograder.judge.facts import limits_for
    from autograder.sandbox.limits import Limits

    assert limits_for(A, {}) == Limits(cell_timeout_s=25, notebook_timeout_s=90)
    assert "sim.theory.bubble_fraction" in view.blocked(A)


def test_no_judge_imports_another_assignments_judge() -> None:
    """What two assignments share lives in a ``shared_*`` module: a judge file names no other assignment's."""
    for path in sorted((REPO / "autograder" / "judge").glob("[0-9][0-9]_*.py")):
        tree = ast.parse(path.read_text())
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        others = [m for m in imported + strings if "autograder.judge.0" in m or "autograder/judge/0" in m]
        assert not others, f"{path.name} reaches another judge ({others}): move what they share to a shared_* module"

"""Fast checks of the grader's parts: each judge's limits, collecting a folder, cleaning a submission.

The end-to-end classes in tests/grading/ show these working together (and
tests/grading/test_sandbox.py the sandbox); these tests pin each part down on
its own, in seconds, so a failure names the part.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from autograder import assignments, notebook_names
from autograder.judge import facts
from autograder.judge.facts import limits_for
from autograder.sandbox.limits import DEFAULT, Limits

ROOT = Path(__file__).resolve().parents[1]


def test_limits_per_assignment_and_overrides() -> None:
    assert limits_for("no_such_assignment", {}) == DEFAULT
    for name in assignments():
        limits = facts.declared(name, "LIMITS", None)
        assert isinstance(limits, Limits), f"autograder/judge/{name}.py declares no LIMITS = Limits(...)"
        assert limits_for(name, {}) == limits != DEFAULT
        assert 0 < limits.cell_timeout_s <= limits.notebook_timeout_s and limits.memory_mb > 0
        assert limits.processes > 16 and 0 < limits.file_mb <= limits.scratch_mb
        assert 0 < limits.output_bytes_cell <= limits.output_bytes_notebook
    got = limits_for("02_partitioner", {"GPIPE_GRADE_CELL_TIMEOUT": "7", "GPIPE_GRADE_MEMORY_MB": "0"})
    assert (got.cell_timeout_s, got.memory_mb) == (7, 0)
    with pytest.raises(ValueError, match="GPIPE_GRADE_NOTEBOOK_TIMEOUT"):
        limits_for(None, {"GPIPE_GRADE_NOTEBOOK_TIMEOUT": "ten"})
    with pytest.raises(ValueError, match="whole number of processes"):
        limits_for(None, {"GPIPE_GRADE_PROCESSES": "many"})


@pytest.fixture
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, Path]:
    if not assignments():
        pytest.skip("no assignment in solutions/ yet")
    monkeypatch.setenv("GPIPE_INSTRUCTOR_DIR", str(tmp_path / "instructor"))
    a = assignments()[0]
    return a, notebook_names(a)[0], tmp_path


def notebook(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), path)
    return path


def test_collect_accepts_nested_and_flat_layouts_and_ignores_extra_files(course: tuple[str, str, Path]) -> None:
    from autograder import cycle

    a, nb, tmp = course
    folder = tmp / "inbox"
    notebook(folder / "ada" / a / f"{nb}.ipynb")
    (folder / "ada" / a / "torch.py").write_text("raise SystemExit")
    notebook(folder / "bob" / f"{nb}.ipynb")  # flat: the notebook's name tells the assignment
    notebook(folder / "cy" / a / f"{nb} (1).ipynb")  # renamed by the learner's browser
    notebook(folder / "not valid!" / a / f"{nb}.ipynb")
    lines = cycle.collect(folder)
    submitted = tmp / "instructor" / "submitted"
    for student in ("ada", "bob", "cy"):
        assert sorted(p.name for p in (submitted / student / a).iterdir()) == [f"{nb}.ipynb", "timestamp.txt"]
    assert any("ada" in ln and "EXTRA_FILES_IGNORED" in ln and "torch.py" in ln for ln in lines), lines
    assert any("cy" in ln and "RENAMED" in ln for ln in lines), lines
    assert any("skipped folder 'not valid!'" in ln and "rename it" in ln for ln in lines), lines
    assert cycle.submissions(a) == ["ada", "bob", "cy"]


def test_collecting_again_keeps_the_timestamp(course: tuple[str, str, Path]) -> None:
    from autograder import cycle

    a, nb, tmp = course
    notebook(tmp / "inbox" / "ada" / a / f"{nb}.ipynb")
    stamp = tmp / "instructor" / "submitted" / "ada" / a / "timestamp.txt"
    cycle.collect(tmp / "inbox")
    first = stamp.read_text()
    cycle.collect(tmp / "inbox")
    assert stamp.read_text() == first and first.endswith("UTC")


def test_flat_layout_with_an_explicit_assignment(course: tuple[str, str, Path]) -> None:
    from autograder import cycle

    a, nb, tmp = course
    notebook(tmp / "inbox" / "ada" / "homework.ipynb")
    cycle.collect(tmp / "inbox", assignment=a)
    assert (tmp / "instructor" / "submitted" / "ada" / a / f"{nb}.ipynb").exists()
    with pytest.raises(SystemExit, match="unknown assignment"):
        cycle.collect(tmp / "inbox", assignment="99_nothing")


def test_screen_names_missing_and_unreadable_notebooks(course: tuple[str, str, Path]) -> None:
    from autograder import cycle

    a, nb, tmp = course
    folder = tmp / "instructor" / "submitted"
    (folder / "gone" / a).mkdir(parents=True)
    (folder / "cut" / a).mkdir(parents=True)
    (folder / "cut" / a / f"{nb}.ipynb").write_text('{"cells": [')
    notebook(folder / "fine" / a / f"{nb}.ipynb")
    assert [code for code, _ in cycle.screen(a, "gone")] == ["MISSING_NOTEBOOK"]
    assert [code for code, _ in cycle.screen(a, "cut")] == ["INVALID_NOTEBOOK"]
    assert cycle.screen(a, "fine") == []


def test_collect_refuses_symlinks_and_oversized_files(course: tuple[str, str, Path]) -> None:
    from autograder import cycle
    from autograder.cycle.collect import MAX_BYTES

    a, nb, tmp = course
    secret = tmp / "secret.txt"
    secret.write_text("the grader's own file")
    (tmp / "inbox" / "eve" / a).mkdir(parents=True)
    (tmp / "inbox" / "eve" / a / f"{nb}.ipynb").symlink_to(secret)
    (tmp / "inbox" / "mal").mkdir(parents=True)
    (tmp / "inbox" / "mal" / a).symlink_to(tmp)  # a whole folder linked elsewhere
    big = notebook(tmp / "inbox" / "big" / a / f"{nb}.ipynb")
    with big.open("a") as fh:
        fh.write(" " * (MAX_BYTES + 1))
    lines = cycle.collect(tmp / "inbox")
    submitted = tmp / "instructor" / "submitted"
    assert not (submitted / "eve" / a / f"{nb}.ipynb").exists()
    assert any("eve" in ln and "NOT_COLLECTED" in ln and "symbolic link" in ln for ln in lines), lines
    assert not (submitted / "mal" / a / f"{nb}.ipynb").exists()
    assert not (submitted / "big" / a / f"{nb}.ipynb").exists()
    assert any("big" in ln and "byte limit" in ln for ln in lines), lines
    assert [code for code, _ in cycle.screen(a, "eve")] == ["MISSING_NOTEBOOK"]
    assert "the grader's own file" not in "".join(lines)


def test_collect_stamps_its_own_time_and_ignores_the_learners(course: tuple[str, str, Path]) -> None:
    from autograder import cycle

    a, nb, tmp = course
    path = notebook(tmp / "inbox" / "ada" / a / f"{nb}.ipynb")
    (path.parent / "timestamp.txt").write_text("2020-01-01 00:00:00.000000 UTC")
    os.utime(path, (0, 0))  # a file time from 1970 says nothing either
    lines = cycle.collect(tmp / "inbox")
    stamp = (tmp / "instructor" / "submitted" / "ada" / a / "timestamp.txt").read_text()
    assert stamp[:4] not in ("2020", "1970") and stamp.endswith("UTC"), stamp
    assert any("TIMESTAMP_IGNORED" in ln for ln in lines), lines
    path.write_text(path.read_text().replace("x = 1", "x = 2"))  # a resubmission is a new time
    cycle.collect(tmp / "inbox")
    assert (tmp / "instructor" / "submitted" / "ada" / a / "timestamp.txt").read_text() >= stamp


def test_clean_drops_unknown_graded_cells_and_spots_edited_locked_ones() -> None:
    from types import SimpleNamespace as NS

    from autograder.cycle.submission import clean

    test = NS(name="test_a", locked=True, cell_type="code",
              source="assert f() == 1\n### BEGIN HIDDEN TESTS\nassert f() == 2\n### END HIDDEN TESTS")
    master = NS(source_cells=[test, NS(name="f", locked=False, cell_type="code", source="")],
                grade_cells=[NS(name="test_a", max_score=2), NS(name="test_b", max_score=1)],
                solution_cells=[NS(name="f")])

    def cell(source: str, grade_id: str, **meta: object) -> object:
        return nbformat.v4.new_code_cell(source, metadata={"nbgrader": {"grade_id": grade_id, **meta}})

    nb = nbformat.v4.new_notebook(cells=[cell("def f(): return 1", "f", solution=True),
                                         cell("assert f() == 1", "test_a", solution=True, points=99),
                                         cell("assert True", "bonus", grade=True, points=100)])
    _, findings, present = clean(nb, master)
    codes = dict(findings)
    assert present == {"f", "test_a"} and "nbgrader" not in nb.cells[2].metadata
    assert "bonus" in codes["UNKNOWN_CELL_DROPPED"] and "test_b" in codes["TEST_CELL_DELETED"]
    assert "LOCKED_CELL_EDITED" not in codes
    assert nb.cells[1].metadata["nbgrader"] | {"schema_version": 3} == {
        "grade_id": "test_a", "grade": True, "solution": False, "locked": True, "points": 2.0, "schema_version": 3}
    nb.cells[1].source = "pass"
    nb.cells[1].metadata["nbgrader"]["checksum"] = "forged"
    assert "test_a" in dict(clean(nb, master)[1])["LOCKED_CELL_EDITED"]


def test_an_interrupted_submission_is_graded_again_and_a_finished_one_is_not(course: tuple[str, str, Path]) -> None:
    from autograder import cycle
    from autograder.cycle.submission import RESULT
    from autograder.cycle.workers import _stale

    a, nb, tmp = course
    notebook(tmp / "inbox" / "ada" / a / f"{nb}.ipynb")
    cycle.collect(tmp / "inbox")
    graded = tmp / "instructor" / "autograded" / "ada" / a
    assert _stale(a, "ada")  # never graded
    graded.mkdir(parents=True)
    (graded / RESULT).write_text('{"problems": [], "seconds": 1.0, "seed": 1}')
    (graded / "timestamp.txt").write_text((tmp / "instructor" / "submitted" / "ada" / a / "timestamp.txt").read_text())
    assert _stale(a, "ada")  # killed before its notebook was written: graded again
    for name in notebook_names(a):
        notebook(graded / f"{name}.ipynb")
    assert not _stale(a, "ada")  # finished: a rerun skips it
    (graded / "timestamp.txt").write_text("2000-01-01 00:00:00.000000 UTC")
    assert _stale(a, "ada")  # resubmitted since

"""The closing question of every notebook: learners' reported hours, read without running anything.

Every notebook ends with ``hours_spent = None``; ``export`` reports what the
class answered (``autograder/cycle/effort.py``). Only a plain number literal
in (0, 100] counts; anything else is no answer, and nothing is executed.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from autograder.cycle.effort import answer, notebook_hours, summary

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("source", "hours"), [
    ("hours_spent = 1.5", 1.5), ("hours_spent = 3  # roughly", 3.0), ("x = 1\nhours_spent = 2\nhours_spent = 4", 4.0),
    ("hours_spent = None  # for example 1.5", None), ("hours_spent = 2 + 1", None), ("hours_spent = '3'", None),
    ("hours_spent = 0", None), ("hours_spent = -2", None), ("hours_spent = 1e9", None), ("hours_spent = True", None),
    ("hours_spent = float('nan')", None), ("hours_spent =", None), ("hours_spent, x = 1, 2", None),
    ("def f():\n    hours_spent = 2", None), ("hours_spent = 1" + " " * 20_000, None),
])
def test_only_a_plain_number_of_hours_is_an_answer(source: str, hours: float | None) -> None:
    assert answer(source) == hours, f"{source[:40]!r} should read as {hours}"


def test_an_answer_is_read_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    assert answer(f"hours_spent = open({str(marker)!r}, 'w').write('x')") is None
    assert not marker.exists(), "reading the answer executed the learner's expression"


def test_the_last_answer_in_a_notebook_counts_and_a_broken_file_is_no_answer(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("hours_spent = 1"),
                                         nbformat.v4.new_markdown_cell("hours_spent = 9"),
                                         nbformat.v4.new_code_cell("hours_spent = 2.5")])
    nbformat.write(nb, tmp_path / "a.ipynb")
    assert notebook_hours(tmp_path / "a.ipynb") == 2.5, "the markdown cell is not an answer; the last code cell wins"
    (tmp_path / "b.ipynb").write_text("{not json")
    (tmp_path / "c.ipynb").write_text('{"cells": {"oops": 1}}')
    assert notebook_hours(tmp_path / "b.ipynb") is None and notebook_hours(tmp_path / "c.ipynb") is None
    assert notebook_hours(tmp_path / "missing.ipynb") is None


def test_the_summary_gives_the_median_and_quartiles_of_those_who_answered() -> None:
    assert summary("01", [None, None]) == "hours spent on 01: 0 of 2 answered"
    assert summary("01", [2.0, None, 4.0]) == \
        "hours spent on 01: 2 of 3 answered, median 3 h (too few answers for quartiles)"
    assert summary("01", [1.0, 2.0, 3.0, 4.0, 5.0, None]) == \
        "hours spent on 01: 5 of 6 answered, median 3 h (half of them between 1.5 and 4.5 h)"


@pytest.mark.parametrize("tree", ["solutions", "notebooks"])
def test_every_notebook_ends_with_the_question_unanswered(tree: str) -> None:
    for path in sorted((ROOT / tree).glob("*/*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        assert cells[-1].cell_type == "code" and cells[-1].source.startswith("hours_spent = None"), (
            f"{path.relative_to(ROOT)} must end with the ungraded question's cell `hours_spent = None`: add it to "
            "the solution notebook and run python -m autograder release")
        assert notebook_hours(path) is None and "nbgrader" not in cells[-1].metadata

"""A class of honest learners: three per assignment, each in a style of their own, none copying anyone.

The review must leave honest work alone: no flag, no hold. Honest work is not
the course's solution pasted into every notebook (that is base material, and
subtracted), but code written independently from each notebook's recipe, in
the styles a real class writes: explicit loops, comprehensions and helpers,
recursion and memoisation, other algorithms (binary search, brute force,
Chan's merge), other names and layouts. The sources live beside this module
(``honest_01.py`` ... ``honest_08.py``); each is correct, which
``tests/grading/test_review_honest.py`` checks with the judge itself.

``write(folder)`` lays them out as ``collect`` reads a class
(``<folder>/<student>/<assignment>/<notebook>.ipynb``, the layout of
:mod:`autograder.selftest.fakeclass`), so they can join a graded class.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import nbformat

from .. import course_root, notebook_names
from . import honest_01, honest_02, honest_03_04, honest_05, honest_05_06, honest_07, honest_08

SOURCES: dict[str, dict[str, dict[str, str]]] = {}  # assignment -> learner -> grade id -> cell
for _part in (honest_01, honest_02, honest_03_04, honest_05, honest_05_06, honest_07, honest_08):
    for _assignment, _learners in _part.SOURCES.items():
        for _learner, _cells in _learners.items():
            SOURCES.setdefault(_assignment, {}).setdefault(_learner, {}).update(_cells)


def students(assignment: str) -> list[str]:
    """The honest learners of ``assignment`` (student ids: ``honest-<name>``)."""
    return [f"honest-{name}" for name in SOURCES.get(assignment, {})]


def notebook(assignment: str, student: str, released: Path | None = None) -> Any:
    """``student``'s submission: the released notebook with each exercise cell replaced by their own."""
    cells = SOURCES[assignment][student.removeprefix("honest-")]
    (name,) = notebook_names(assignment)[:1]
    nb = nbformat.read((released or course_root() / "notebooks") / assignment / f"{name}.ipynb", as_version=4)
    nb = copy.deepcopy(nb)
    found = set()
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in cells:
            cell.source = cells[gid]
            found.add(gid)
    if found != set(cells):
        raise KeyError(f"{assignment}: no cells {sorted(set(cells) - found)} in the released notebook: update "
                       f"autograder/selftest/honest_*.py to the notebook's grade ids")
    return nb


def write(folder: Path, released: Path | None = None, assignments: list[str] | None = None) -> list[tuple[str, str]]:
    """Write every honest submission under ``folder``; returns the (assignment, student) pairs written."""
    out = []
    for assignment in assignments or sorted(SOURCES):
        (name,) = notebook_names(assignment)[:1]
        for student in students(assignment):
            target = Path(folder) / student / assignment
            target.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook(assignment, student, released), target / f"{name}.ipynb")
            out.append((assignment, student))
    return out

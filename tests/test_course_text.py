"""What the course's text promises about itself: points, time (estimated and measured), its own place in the path.

These sentences go stale silently when an assignment is added or a grade
changes (issue 25 found a notebook calling itself the last of eight, headers
without points, and a start page stopping at 06), so they are read from the
files and checked against the nbgrader metadata and the folders that exist.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = sorted(p.parent.name for p in (ROOT / "solutions").glob("*/*.ipynb"))
NOTEBOOKS = [p.relative_to(ROOT) for tree in ("solutions", "notebooks")
             for p in sorted((ROOT / tree).glob("*/*.ipynb"))]
POINTS = re.compile(r"\*\*Points:\*\* (\d+)\b")
GRADED_CELLS = re.compile(r"Graded cells: (.*?)\.(?:\s|$)", re.S)
GRADED_CELL = re.compile(r"`(\w+)` \((\d+)(?: points?)?\)")
RUNS_IN = re.compile(r"\*\*Runs in:\*\* about \d+ minutes? .*measured: \d+ s\b")
RUN_TIME_PENDING = {"07_beat_the_bubble"}  # its header is being rewritten with 07's ladder (issue 25, item 2)
CALLS_ITSELF_LAST = re.compile(r"\b(?:last|final)\s+(?:notebook|assignment)\b", re.I)


def _gpipe_book() -> object:
    """book/_ext/gpipe_book.py, whose assignment_points the chapter pages print (one definition of points)."""
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    spec = importlib.util.spec_from_file_location("gpipe_book", ROOT / "book" / "_ext" / "gpipe_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpipe_book = _gpipe_book()


def header(path: Path) -> str:
    cells = nbformat.read(ROOT / path, as_version=4).cells
    assert cells and cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), (
        f"{path}: the first cell must be the markdown header with the notebook's title")
    return cells[0].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=str)
def test_header_states_the_graded_points_and_a_time(path: Path) -> None:
    text, tree, assignment = header(path), path.parts[0], path.parts[1]
    want = gpipe_book.assignment_points(assignment, ROOT, tree=tree)
    stated = POINTS.findall(text)
    fix = f"fix the header of solutions/{assignment}/ and run python -m autograder release {assignment}"
    assert stated == [str(want)], (
        f"{path}: the header must say **Points:** {want} once (the sum of its graded cells' nbgrader points), "
        f"it says {stated or 'nothing'}; {fix}")
    assert "**Time:**" in text, f"{path}: the header must give a time estimate (**Time:** ...); {fix}"
    if assignment not in RUN_TIME_PENDING:
        assert RUNS_IN.search(text), (
            f"{path}: the header must say how long the notebook took to run, measured (**Runs in:** about N "
            f"minutes ... measured: S s ...): time `jupyter nbconvert --execute` on the solution; {fix}")
    listed = GRADED_CELLS.search(text)
    if listed:  # a header that names its graded cells must name each one with its points
        cells = nbformat.read(ROOT / path, as_version=4).cells
        graded = {c.metadata["nbgrader"]["grade_id"]: str(c.metadata["nbgrader"]["points"])
                  for c in cells if c.metadata.get("nbgrader", {}).get("grade")}
        assert dict(GRADED_CELL.findall(listed.group(1))) == graded, (
            f"{path}: 'Graded cells:' lists {listed.group(1)!r}, but the graded cells are {graded}; {fix}")


def test_start_page_shows_every_assignment() -> None:
    intro = (ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    missing = [a for a in ASSIGNMENTS if f"assignments/{a}`" not in intro and f"notebooks/{a}/" not in intro]
    assert not missing, (f"book/intro.md's path through the module leaves out {missing}: link each one's chapter "
                         "(assignments/<NN_name>) or notebook (notebooks/<NN_name>/...), one line each")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=str)
def test_no_notebook_calls_itself_the_last_while_a_later_one_exists(path: Path) -> None:
    later = [a for a in ASSIGNMENTS if a > path.parts[1]]
    if not later:
        pytest.skip("the last assignment may say so")
    cells = nbformat.read(ROOT / path, as_version=4).cells
    said = [m.group(0) for c in cells if c.cell_type == "markdown" for m in CALLS_ITSELF_LAST.finditer(c.source)]
    assert not said, f"{path} calls itself {said[0]!r}, but {later} come after it"

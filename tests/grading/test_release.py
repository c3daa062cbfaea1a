"""The release an instructor hands out: no solution leaks, nothing drifts, every test fails on stubs.

Checked on a fresh ``nbgrader generate_assignment`` (the ``released`` fixture)
and on the committed ``notebooks/``; ``nbgrader validate --invert`` shows every
graded test fails on the untouched stubs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from classroom import ALL, ROOT, present

from autograder import assignments, notebook_names

pytestmark = pytest.mark.timeout(1800)  # the first test to need the release pays for generating it


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

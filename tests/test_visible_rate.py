"""Warned before grading: planted mistakes already fail a visible test in the learner's notebook.

A learner whose visible tests pass should lose hidden points only for values,
never for a kind of case they could not see. Here every planted mistake is put
into the course's notebook and its visible test cells are run as the learner
runs them (setup, imports, helpers, exercises and tests; the demo cells are
skipped). Each mistake that says which visible tests it fails (``visible``)
must fail exactly those, and at least 80% of those mistakes must fail one.
The measured rate is printed for the report.

The words matter as much as the verdict (issue 25): a learner who reads
"gradient differs" in the notebook and "restore the state recorded before
this micro-batch's forward" from the grader was told the cause too late. Each
planted mistake's ``message`` is the cause the judge names
(``tests/test_judge.py`` and the graded class check that side); here the
visible test that fails must say the same words first.
"""

from __future__ import annotations

import os
import signal

import nbformat
import pytest

from autograder import assignments, course_root, notebook_names
from autograder.judge.facts import limits_for
from autograder.selftest.fakeclass import planted, replace_cell

pytestmark = [pytest.mark.timeout(1200), pytest.mark.slow]  # every planted mistake re-runs a whole notebook
RATE = 0.8
# A cell running longer than its assignment's graded cell limit (autograder/sandbox/limits.py) counts as failed, as it
# would in grading: a planted brute force stops there. The course's own cells take at most a few seconds, on two
# busy cores too, so the limit is only ever a watchdog for them.


class CellTimeout(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise CellTimeout()


def _meta(cell: nbformat.NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def failing_visible_tests(assignment: str, nb: nbformat.NotebookNode) -> dict[str, str]:
    """The test cells of ``nb`` that raise when the notebook's graded path is run top to bottom, each with what it
    said (the exception's type and message, as the learner reads it under the cell)."""
    from IPython.core.inputtransformer2 import TransformerManager

    first_exercise = next(i for i, c in enumerate(nb.cells) if _meta(c).get("solution"))
    namespace: dict = {"__name__": "__main__"}
    failed: dict[str, str] = {}
    os.environ["NBGRADER_EXECUTION"] = "1"  # the notebooks' slow demos stay small
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for index, cell in enumerate(nb.cells):
            meta = _meta(cell)
            if cell.cell_type != "code" or not (meta or index < first_exercise):
                continue
            signal.setitimer(signal.ITIMER_REAL, limits_for(assignment, {}).cell_timeout_s)
            try:
                exec(compile(TransformerManager().transform_cell(cell.source), f"<{assignment} cell {index}>", "exec"),
                     namespace)  # noqa: S102 - the course's own cells and planted mistakes
            except Exception as exc:  # noqa: BLE001 - a failing cell is what is measured
                if meta.get("grade") and not meta.get("solution"):
                    failed[meta["grade_id"]] = f"{type(exc).__name__}: {exc}"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
        os.environ.pop("NBGRADER_EXECUTION", None)
    return failed


def source(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(course_root() / "solutions" / assignment / f"{notebook_names(assignment)[0]}.ipynb",
                         as_version=4)


MEASURED: dict[str, tuple[bool, set[str]]] = {}


@pytest.mark.parametrize("assignment", [a for a in assignments() if planted(a)])
def test_planted_mistakes_fail_the_visible_tests_they_name(assignment: str) -> None:
    nb = source(assignment)
    assert not failing_visible_tests(assignment, nb), "the solution must pass every visible test"
    for mistake in planted(assignment):
        said = failing_visible_tests(assignment, replace_cell(nb, mistake["cell"], mistake["source"]))
        failed = set(said)
        MEASURED[f"{assignment}/{mistake['name']}"] = ("visible" in mistake, failed)
        if "visible" in mistake:
            assert failed == set(mistake["visible"]), (mistake["name"], failed)
        SAID[f"{assignment}/{mistake['name']}"] = said


SAID: dict[str, dict[str, str]] = {}


@pytest.mark.parametrize("assignment", [a for a in assignments() if planted(a)])
def test_the_visible_tests_name_the_judges_cause_first(assignment: str) -> None:
    """Every planted mistake fails a visible test whose message contains the cause the judge names (``message``)."""
    missing = [m["name"] for m in planted(assignment) if "message" not in m or "visible" not in m]
    assert not missing, (f"{assignment}: planted mistakes {missing} say neither which visible tests they fail "
                         "(visible) nor the cause the judge names (message): add both to "
                         f"autograder/planted/{assignment}.json")
    nb = source(assignment)
    unsaid = []
    for mistake in planted(assignment):
        key = f"{assignment}/{mistake['name']}"
        said = SAID.get(key)
        if said is None:  # this test run alone: measure here
            said = failing_visible_tests(assignment, replace_cell(nb, mistake["cell"], mistake["source"]))
        text = " ".join(said.values())
        if mistake["message"] not in text:
            unsaid.append(f"{mistake['name']}: the judge says {mistake['message']!r}, the visible tests say "
                          f"{text[:400]!r}")
    assert not unsaid, ("the visible tests must name the judge's cause in its words:\n" + "\n".join(unsaid))


def test_most_mistakes_are_caught_before_grading() -> None:
    if len(MEASURED) < sum(len(planted(a)) for a in assignments()):
        pytest.skip("needs the per-assignment measurements of this module (run the whole file)")
    claimed = [bool(failed) for named, failed in MEASURED.values() if named]
    everything = [bool(failed) for _, failed in MEASURED.values()]
    print(f"\nvisible-test rate: {sum(claimed)}/{len(claimed)} of the new planted mistakes, "
          f"{sum(everything)}/{len(everything)} of all planted mistakes fail a visible test")
    assert sum(claimed) >= RATE * len(claimed)

"""The honest class (autograder/selftest/honest.py): correct, and never flagged or held.

Twenty-four solution sets, three per assignment, each learner in a style of
their own and written from the notebook's recipe. The judge itself (its probe
run locally, on the grading view) must give every one full marks, and the
class review of each assignment, with the course's solution among them, must
find nothing: no flag, no hold.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nbformat
import pytest

from autograder import assignments, notebook_names
from autograder.review.run import review_class, review_submission
from autograder.selftest import honest
from autograder.selftest.fakeclass import solved

pytestmark = pytest.mark.timeout(900)


def test_every_assignment_has_at_least_three_honest_learners() -> None:
    assert set(honest.SOURCES) == set(assignments())
    assert all(len(honest.students(a)) >= 3 for a in assignments())
    assert sum(len(honest.students(a)) for a in assignments()) >= 20


@pytest.mark.parametrize("assignment", assignments())
def test_the_honest_class_gets_no_flag_and_no_hold(assignment: str) -> None:
    cls = {s: honest.notebook(assignment, s) for s in honest.students(assignment)}
    cls["correct"] = solved(assignment, notebook_names(assignment)[0], Path("notebooks"))
    found = review_class(assignment, cls)
    assert {s: [f.line() for f in fs] for s, fs in found.items() if fs} == {}


@pytest.mark.slow  # the judge's probe on every honest notebook: minutes in all, so not in make test-fast
@pytest.mark.parametrize("assignment", assignments())
def test_each_honest_solution_scores_full_marks_with_the_judge(assignment: str) -> None:
    from autograder.judge import grade_submission
    from autograder.judge.local import run_probe_locally

    for student in honest.students(assignment):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "submission.ipynb"
            nbformat.write(honest.notebook(assignment, student), path)
            result = grade_submission(assignment, path, run_probe_locally, seed=1234, student=student,
                                      review=review_submission)
        lost = {g: m for g, m in result.messages.items() if result.scores[g] < result.max_scores[g]}
        assert not lost, f"{student} on {assignment} is not correct: {lost}"
        assert not result.flags and not getattr(result, "holds", []), (student, result.flags)


def test_write_lays_the_class_out_as_collect_reads_it(tmp_path: Path) -> None:
    written = honest.write(tmp_path, assignments=["03_scheduler"])
    assert [s for _, s in written] == honest.students("03_scheduler")
    for _, student in written:
        nb = nbformat.read(tmp_path / student / "03_scheduler" / "scheduler.ipynb", as_version=4)
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "one_f_one_b")
        assert cell.source == honest.SOURCES["03_scheduler"][student.removeprefix("honest-")]["one_f_one_b"]

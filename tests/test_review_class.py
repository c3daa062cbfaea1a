"""The class review is bounded and crash-proof: one bad submission is that submission's finding, never the class's.

A class of 30: three honest learners, copies of the course's solution,
notebooks bent out of shape in every way JSON allows, one with a 100 KB
function. The review must answer for every student, name each problem on its
own submission only, and do work bounded by its caps (counted, not timed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest

from autograder import notebook_names
from autograder.review.run import CLASS_RULES, review_class
from autograder.review.similarity import MAX_TOKENS
from autograder.review.tokens import Tally
from autograder.selftest import honest
from autograder.selftest.fakeclass import replace_cell, solved

A = "02_partitioner"


def correct() -> Any:
    return solved(A, notebook_names(A)[0], Path("notebooks"))


def huge_function(kb: int = 100) -> str:
    lines = ["def partition_optimal(costs, K):", "    acc = 0.0"]
    i = 0
    while sum(map(len, lines)) < kb * 1000:
        lines.append(f"    acc = acc + costs[{i % 5}] * {i} - (acc / {i + 1})")
        i += 1
    return "\n".join([*lines, "    return [len(costs) // K] * K if acc else [1] * K", ""])


def _raw(nb: Any, mutate: Any) -> str:
    data = json.loads(nbformat.writes(nb))
    mutate(data)
    return json.dumps(data)


def _solution_cell(data: dict) -> dict:
    return next(c for c in data["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("solution"))


MALFORMED = {  # student -> a change to the notebook's JSON
    "meta-string": lambda d: _solution_cell(d)["metadata"].__setitem__("nbgrader", "solution"),
    "meta-list": lambda d: _solution_cell(d)["metadata"].__setitem__("nbgrader", ["grade_id"]),
    "grade-id-int": lambda d: _solution_cell(d)["metadata"]["nbgrader"].__setitem__("grade_id", 5),
    "metadata-string": lambda d: _solution_cell(d).__setitem__("metadata", "none"),
    "cell-not-object": lambda d: d["cells"].insert(2, 42),
    "source-int": lambda d: _solution_cell(d).__setitem__("source", 7),
    "cells-not-list": lambda d: d.__setitem__("cells", {"0": "x"}),
}


@pytest.fixture(scope="module")
def klass(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("class")
    notebooks: dict[str, Any] = {s: honest.notebook(A, s) for s in honest.students(A)}
    notebooks |= {f"copy{i}": correct() for i in range(18)}
    notebooks["huge"] = replace_cell(correct(), "partition_optimal", huge_function())
    paths = {}
    for student, nb in notebooks.items():
        paths[student] = folder / f"{student}.ipynb"
        nbformat.write(nb, paths[student])
    for student, mutate in MALFORMED.items():
        paths[student] = folder / f"{student}.ipynb"
        paths[student].write_text(_raw(correct(), mutate))
    paths["not-json"] = folder / "not-json.ipynb"
    paths["not-json"].write_text(nbformat.writes(correct())[:500])
    assert len(paths) == 30
    return paths


def test_every_student_is_answered_and_each_problem_stays_on_its_own(klass: dict[str, Path]) -> None:
    found = review_class(A, klass)
    assert set(found) == set(klass)
    bad = set(MALFORMED) | {"not-json", "huge"}
    assert {s for s, f in found.items() if f} == bad, {s: f for s, f in found.items() if f and s not in bad}
    for student in MALFORMED:
        assert any(f.rule in ("malformed", "unreadable") for f in found[student]), (student, found[student])
    assert [f.rule for f in found["not-json"]] == ["unreadable"]
    assert any("nbgrader metadata is a str" in f.evidence for f in found["meta-string"])


def test_a_100_kb_function_is_cut_named_and_costs_a_bounded_amount(klass: dict[str, Path]) -> None:
    others = {s: p for s, p in klass.items() if s != "huge"}
    with_huge, without = Tally(), Tally()
    found = review_class(A, klass, with_huge)
    review_class(A, others, without)
    cut = [f for f in found["huge"] if f.rule == "size"]
    assert cut and f"{MAX_TOKENS:,} tokens" in cut[0].evidence and "partition_optimal" in cut[0].where
    assert with_huge.spent - without.spent <= 3 * MAX_TOKENS, (with_huge.spent, without.spent)
    assert without.spent <= 3 * MAX_TOKENS * len(others)


def test_a_failing_review_holds_that_submission_only(klass: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import autograder.review.run as review_module

    real = review_module.holds

    def broken(assignment: str, extracted: Any, kept: Any = None) -> list:
        if "one_x" in extracted.cells.get("partition_by_count", ""):
            raise RecursionError("maximum recursion depth exceeded")
        return real(assignment, extracted, kept)

    monkeypatch.setattr(review_module, "holds", broken)
    odd = replace_cell(correct(), "partition_by_count",
                       "def partition_by_count(n, K):\n    one_x = 1\n    return [one_x] * K\n")
    found = review_class(A, {"odd": odd, "honest-ada": honest.notebook(A, "honest-ada")})
    assert [(f.kind, f.rule) for f in found["odd"]] == [("hold", "review-failed")]
    assert "RecursionError" in found["odd"][0].evidence and found["honest-ada"] == []


def test_classmates_are_chosen_by_rule_whatever_the_student_id(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A student id holding "gpipe_core" used to hide a copy from the class review's text filter."""
    from autograder.cycle.workers import _classmates

    monkeypatch.setenv("GPIPE_INSTRUCTOR_DIR", str(tmp_path))
    source = honest.SOURCES[A]["ada"]["partition_optimal"]
    submissions = {s: honest.notebook(A, s) for s in honest.students(A)}
    submissions["gpipe_core-fan"] = replace_cell(correct(), "partition_optimal", source)
    submissions["broken"] = None
    for student, nb in submissions.items():
        folder = tmp_path / "submitted" / student / A
        folder.mkdir(parents=True)
        if nb is None:
            (folder / f"{notebook_names(A)[0]}.ipynb").write_text(_raw(correct(), MALFORMED["meta-string"]))
        else:
            nbformat.write(nb, folder / f"{notebook_names(A)[0]}.ipynb")
    flags = _classmates(A, sorted(submissions), {})
    assert {s for s, f in flags.items() if f} == {"honest-ada", "gpipe_core-fan"}, flags
    assert all(f.rule in CLASS_RULES for fs in flags.values() for f in fs)
    assert "honest-ada's partition_optimal" in flags["gpipe_core-fan"][0].evidence



def test_the_merge_compares_classmates_without_reviewing_each_again(klass: dict[str, Path],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``own=False`` (the merge's call) finds exactly the full review's class findings, and runs none of the rest."""
    import autograder.review.run as review_module

    copier = replace_cell(correct(), "partition_optimal", honest.SOURCES[A]["ada"]["partition_optimal"])
    students = {**{s: p for s, p in klass.items() if s.startswith(("honest", "copy"))}, "copier": copier}
    full = review_class(A, students)
    for part in ("holds", "machinery", "engine_findings", "duplicates"):
        monkeypatch.setattr(review_module, part, lambda *a, **k: pytest.fail("the merge reviewed a submission again"))
    only = review_class(A, students, own=False)
    assert only["copier"], "the copy of a classmate's function was not found"
    assert {s: [(f.rule, f.evidence) for f in fs if f.rule in CLASS_RULES] for s, fs in full.items()} == \
        {s: [(f.rule, f.evidence) for f in fs] for s, fs in only.items()}

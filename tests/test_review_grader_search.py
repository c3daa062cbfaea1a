"""The grader's puzzle search, pasted into notebook 07, is flagged by the review with the file it came from.

The search that proves 07's targets returns optimal tables, and it is public
in the repository (``autograder/judge/puzzle_search.py``). The review compares
learner code with that file as it does with gpipe_core's blocked functions
(07's judge names it in ``REVIEW.grader_code``): a pasted copy, whole or renamed,
reordered and padded, is flagged with evidence naming the file, and the course's
own solution is not. These tests call the review directly (no graded class).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.disguise import disguise

from autograder import notebook_names
from autograder.judge import facts, puzzle_search
from autograder.review import base
from autograder.review.run import review_submission
from autograder.selftest.fakeclass import replace_cell, solved

A = "07_beat_the_bubble"
FILE = "autograder/judge/puzzle_search.py"


@pytest.fixture(autouse=True)
def _fresh_reference() -> Iterator[None]:
    base.engine.cache_clear()  # the reference set is cached per assignment; some tests change it
    yield
    base.engine.cache_clear()


def _correct() -> Any:
    return solved(A, notebook_names(A)[0], Path("notebooks"))


def _copied(source: str) -> list:
    found = review_submission(A, replace_cell(_correct(), "puzzle_helper", source))
    return [f for f in found if f.rule == "copied-engine"]


def test_the_grader_search_is_in_the_reference_set() -> None:
    names = {e.name for e in base.engine(A)}
    assert f"{FILE}:solve" in names and f"{FILE}:_orders" in names
    assert all(e.origin == "the grader's" for e in base.engine(A) if e.name.startswith(FILE))
    assert not [e for e in base.engine("02_partitioner") if e.name.startswith("autograder/")]


def test_the_whole_file_pasted_is_flagged_naming_it() -> None:
    found = _copied(Path(puzzle_search.__file__).read_text())
    assert found, "the grader's search pasted into puzzle_helper went unflagged"
    assert all(f.kind == "flag" and "cell puzzle_helper" in f.where for f in found)
    assert any(f"the grader's {FILE}:solve" in f.evidence and f.where.startswith("solve ") for f in found)


def test_a_renamed_reordered_padded_search_is_flagged_naming_it() -> None:
    pasted = disguise(inspect.getsource(puzzle_search.solve), "best_orders")
    assert "v0" in pasted and "_unused = 0" in pasted, "the disguise must rename and pad"
    found = _copied(pasted)
    assert [f for f in found if f.where.startswith("best_orders ") and f"{FILE}:solve" in f.evidence], found


def test_without_the_grader_code_in_the_reference_the_same_copy_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """What flags the copy is the grader's file in the reference set, nothing else (so the tests above can fail)."""
    monkeypatch.setattr(facts, "review", lambda assignment: facts.Review())
    pasted = disguise(inspect.getsource(puzzle_search.solve), "best_orders")
    assert _copied(pasted) == []


def test_the_published_solution_is_not_flagged_against_the_search() -> None:
    assert review_submission(A, _correct()) == []

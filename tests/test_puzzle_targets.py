"""The targets shipped to learners: exactly the drawable puzzles, each equal to the grader's search, never trusted.

``gpipe_core/course/puzzle_targets.py`` holds one number per puzzle the ladder can
draw, so the notebook prints every learner's targets next to the proven lower
bound. These tests enumerate each rung's draw space, check the shipped keys are
exactly those puzzles, re-run the exact search on a fixed sample (the whole
table takes too long for a unit test; the generator is the full check), and
check that the grader computes its own targets whatever the shipped file says.
"""

from __future__ import annotations

import pytest

from autograder.judge import puzzle_search
from autograder.judge.puzzle_search import solve
from gpipe_core.course import puzzle_targets
from gpipe_core.course.puzzle_ladder import PRACTICE_ID, RUNGS, draw, drawable, known_target, ladder
from gpipe_core.course.puzzles import Puzzle, lower_bound

SAMPLE_PER_RUNG = 6  # fresh searches per rung: 54 of the 202, a few seconds of CPU


def test_drawable_lists_every_puzzle_any_id_draws() -> None:
    for n in range(1, len(RUNGS) + 1):
        space = drawable(n)
        assert len(space) == len(set(space)), f"rung {n}: duplicates in the draw space"
        assert 12 <= len(space) <= 40, f"rung {n}: {len(space)} drawable puzzles"
        drawn = {draw(f"id-{i}", n) for i in range(400)} | {draw(PRACTICE_ID, n)}
        assert drawn <= set(space), f"rung {n}: drawn but not listed: {drawn - set(space)}"
        assert len(drawn) >= len(space) // 2, f"rung {n}: 400 ids drew only {len(drawn)} of {len(space)}"
    with pytest.raises(ValueError, match="rungs 1 to 9"):
        drawable(10)


def test_drawable_follows_every_branch_of_a_threshold() -> None:
    """Rung 9 flips a coin between a three-device and a two-device V: both sides are listed."""
    assert {p.K for p in drawable(9)} == {2, 3}


def test_the_shipped_table_covers_exactly_the_drawable_puzzles() -> None:
    want = {p.statement() for n in range(1, len(RUNGS) + 1) for p in drawable(n)}
    got = set(puzzle_targets.TARGETS)
    assert got == want, (f"gpipe_core/course/puzzle_targets.py is stale ({len(want - got)} missing, {len(got - want)} "
                         "extra): run python -m autograder.judge.puzzle_search --write-targets")
    assert all(type(t) is int and t > 0 for t in puzzle_targets.TARGETS.values())


@pytest.mark.parametrize("rung", range(1, len(RUNGS) + 1))
def test_a_sample_of_shipped_targets_equals_a_fresh_search(rung: int) -> None:
    space = drawable(rung)
    step = max(1, len(space) // SAMPLE_PER_RUNG)
    for p in space[::step][:SAMPLE_PER_RUNG]:
        best, _ = solve(p, max_states=30_000)
        assert known_target(p) == best, f"rung {rung}: shipped {known_target(p)}, search {best} for {p.statement()}"


def test_every_learners_ladder_has_a_known_target_and_other_puzzles_none() -> None:
    for student in (PRACTICE_ID, "alice", "student-7"):
        assert all(known_target(p) is not None for p in ladder(student))
    assert known_target(Puzzle("not drawable", K=5, M=11)) is None


def test_the_grader_searches_and_never_reads_the_shipped_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from autograder.judge.grade import judge_module

    judge = judge_module("07_beat_the_bubble")
    assert judge.target is puzzle_search.target
    source = Path(judge.__file__).read_text() + Path(puzzle_search.__file__).read_text()
    assert "known_target" not in source and "puzzle_targets.TARGETS" not in source
    p = draw("alice", 2)
    honest = known_target(p)
    monkeypatch.setattr(puzzle_targets, "TARGETS", dict.fromkeys(puzzle_targets.TARGETS, 10**6))
    puzzle_search._solved.cache_clear()
    assert judge.target(p) == honest  # computed again, not read from the (here tampered) table


def test_without_a_cap_every_drawable_target_is_its_lower_bound() -> None:
    """What book/after_gpipe.md says: a gap between target and lower bound appears only under a cap."""
    free = [p for n in range(1, len(RUNGS) + 1) for p in drawable(n) if p.cap is None]
    assert free and all(known_target(p) == lower_bound(p) for p in free)
    assert any(known_target(p) > lower_bound(p) for p in drawable(1))  # and a cap does open one

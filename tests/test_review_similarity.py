"""Copy detection: disguised copies flag, with their evidence; what the course hands out, or many write, does not.

The review reads the definitions the probe loads (decoys and duplicate cells
change nothing), normalises them (renaming, reordering independent lines and
padding with dead statements change nothing) and compares winnowed
fingerprints with the engine's and the classmates', minus the base material.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

import pytest
from helpers.disguise import disguise, swaps

from autograder import assignments, notebook_names
from autograder.review.run import review_class, review_submission
from autograder.review.tokens import Budget, function_tokens
from autograder.selftest import honest
from autograder.selftest.fakeclass import grade_id, replace_cell, solved
from gpipe_core.engine import microbatch, partition
from gpipe_core.schedules import zoo

COPIES = [  # (assignment, cell, function name, the engine function pasted)
    ("02_partitioner", "partition_optimal", "partition_optimal", partition.balance_by_cost),
    ("02_partitioner", "measure_layer_costs", "measure_layer_costs", partition.profile_layers),
    ("07_beat_the_bubble", "zb_h1", "zb_h1", zoo.zb_h1_schedule),
    ("07_beat_the_bubble", "interleaved", "interleaved", zoo.interleaved_schedule),
    ("01_microbatching", "split_batch", "split_batch", microbatch.split),
    ("05_assembling", "partition", "my_partition", partition.balance_by_cost),
]


def correct(assignment: str) -> Any:
    return solved(assignment, notebook_names(assignment)[0], Path("notebooks"))


def rules(findings: list, rule: str) -> list:
    return [f for f in findings if f.rule == rule]


@pytest.mark.parametrize("assignment", assignments())
def test_the_published_solution_is_never_flagged(assignment: str) -> None:
    assert review_submission(assignment, correct(assignment)) == []


@pytest.mark.parametrize(("assignment", "cell", "name", "engine"), COPIES, ids=[c[2] for c in COPIES])
def test_a_disguised_copy_of_the_engine_is_flagged(assignment: str, cell: str, name: str, engine: Any) -> None:
    source = inspect.getsource(engine)
    pasted = disguise(source, name)
    assert "v0" in pasted and "_unused = 0" in pasted, "the disguise must rename and pad"
    found = rules(review_submission(assignment, replace_cell(correct(assignment), cell, pasted)), "copied-engine")
    assert found, f"a renamed, reordered and padded copy of {engine.__name__} went unflagged:\n{pasted}"
    assert all(f.kind == "flag" and f"cell {cell}" in f.where and "gpipe_core's" in f.evidence for f in found)
    assert engine.__name__ in " ".join(f.evidence for f in found)


def test_the_disguise_changes_nothing_the_review_compares() -> None:
    """Renaming, swapping independent lines and dead padding leave the normalised token stream as it was."""
    import ast

    source = inspect.getsource(partition.balance_by_cost)
    assert swaps(source) >= 1, "the disguise must reorder something here, or this test proves nothing"

    def stream(text: str) -> list[str]:
        return function_tokens(ast.parse(text).body[0], Budget(10**6)).tokens

    assert stream(disguise(source, "partition_optimal")) == stream(disguise(source, "x", False, False, False))


def _move_to_end(nb: Any, gid: str) -> Any:
    nb = copy.deepcopy(nb)
    moved = [c for c in nb.cells if grade_id(c) == gid]
    nb.cells = [c for c in nb.cells if grade_id(c) != gid] + moved
    return nb


def test_a_decoy_later_in_the_notebook_does_not_hide_the_copy_the_probe_loads() -> None:
    """The extractor reads solution cells in the course's order: the copy in the later cell is the live one."""
    a = "02_partitioner"
    pasted = disguise(inspect.getsource(partition.balance_by_cost), "partition_optimal")
    decoy = honest.SOURCES[a]["ada"]["partition_optimal"]
    count = next(c.source for c in correct(a).cells if grade_id(c) == "partition_by_count")
    nb = replace_cell(replace_cell(correct(a), "partition_optimal", pasted), "partition_by_count",
                      count + "\n\n" + decoy)
    found = rules(review_submission(a, _move_to_end(nb, "partition_by_count")), "copied-engine")
    assert found and all("cell partition_optimal" in f.where for f in found), found
    # the other way round the honest definition is the one the probe loads, and the one reviewed
    nb = replace_cell(replace_cell(correct(a), "partition_optimal", decoy), "partition_by_count",
                      count + "\n\n" + pasted)
    assert rules(review_submission(a, _move_to_end(nb, "partition_optimal")), "copied-engine") == []


def test_a_duplicate_grade_id_is_reviewed_as_graded_and_named() -> None:
    a = "02_partitioner"
    pasted = disguise(inspect.getsource(partition.balance_by_cost), "partition_optimal")
    first_copy = replace_cell(correct(a), "partition_optimal", pasted)
    second = copy.deepcopy(next(c for c in correct(a).cells if grade_id(c) == "partition_optimal"))
    first_copy.cells.append(second)
    found = review_submission(a, first_copy)
    assert rules(found, "copied-engine") and rules(found, "duplicate-cell")
    assert "appears 2 times" in rules(found, "duplicate-cell")[0].evidence
    honest_first = correct(a)
    tail = copy.deepcopy(second)
    tail.source = pasted
    honest_first.cells.append(tail)
    found = review_submission(a, honest_first)
    assert rules(found, "duplicate-cell") and not rules(found, "copied-engine")


def test_a_disguised_copy_of_a_classmate_flags_both_naming_each_other() -> None:
    a = "02_partitioner"
    theirs = honest.SOURCES[a]["ada"]["partition_optimal"]
    copier = replace_cell(correct(a), "partition_optimal", disguise(theirs, "partition_optimal"))
    cls = {s: honest.notebook(a, s) for s in honest.students(a)} | {"correct": correct(a), "copier": copier}
    found = {s: rules(f, "copied-classmate") for s, f in review_class(a, cls).items()}
    assert {s for s, f in found.items() if f} == {"honest-ada", "copier"}, found
    assert "copier's partition_optimal" in found["honest-ada"][0].evidence
    assert "honest-ada's partition_optimal" in found["copier"][0].evidence
    # the single-notebook form agrees
    assert review_submission(a, copier, {"honest-ada": honest.notebook(a, "honest-ada")})


HELPER = '''

def _describe_balance(costs, balance):
    report = {}
    start = 0
    for stage, size in enumerate(balance):
        layers = list(range(start, start + size))
        total = 0.0
        for layer in layers:
            total += costs[layer]
        report[stage] = {"layers": layers, "cost": total, "share": total / max(sum(costs), 1e-12)}
        start += size
    slowest = max(report, key=lambda stage: report[stage]["cost"])
    return report, slowest
'''


def _with_helper(nb: Any) -> Any:
    cell = next(c.source for c in nb.cells if grade_id(c) == "partition_by_count")
    return replace_cell(nb, "partition_by_count", cell + HELPER)


def test_code_many_classmates_share_is_common_not_copied() -> None:
    """A helper four of six learners wrote alike is nobody's copy; the same helper in two of six is flagged."""
    a = "02_partitioner"
    base = {s: honest.notebook(a, s) for s in honest.students(a)} | {f"more{i}": correct(a) for i in range(3)}
    four = ("honest-ada", "honest-ben", "more0", "more1")
    many = {s: _with_helper(nb) if s in four else nb for s, nb in base.items()}
    assert not any(rules(f, "copied-classmate") for f in review_class(a, many).values())
    two = {s: _with_helper(nb) if s in ("honest-ada", "more0") else nb for s, nb in base.items()}
    flagged = {s for s, f in review_class(a, two).items() if rules(f, "copied-classmate")}
    assert flagged == {"honest-ada", "more0"}


def test_a_short_function_written_alike_by_two_is_not_compared() -> None:
    a = "03_scheduler"
    short = ("def idle_fraction(table, K):\n    used = sum(len(t) for t in table)\n"
             "    return 1 - used / (K * len(table))\n")
    cls = {s: honest.notebook(a, s) for s in honest.students(a)}
    cls |= {f"twin{i}": replace_cell(correct(a), "idle_fraction", short) for i in range(2)}
    assert not any(rules(f, "copied-classmate") for f in review_class(a, cls).values())

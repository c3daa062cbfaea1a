"""While a learner's work is graded, gpipe_core's own versions of it refuse to run."""

from __future__ import annotations

import pytest
import torch.utils.checkpoint
from engine_helpers import batch, small_model
from torch import nn

import gpipe_core
from gpipe_core import GPipe, Recompute, balance_by_cost, gpipe_schedule
from gpipe_core.grading import ReferenceDisabled, learner_only, run_learner


def test_aliases_and_module_attributes_are_guarded() -> None:
    with learner_only():
        for call in (lambda: balance_by_cost([1.0, 2.0], 1), lambda: gpipe_core.partition.balance_by_count(4, 2),
                     lambda: gpipe_schedule(2, 2), lambda: gpipe_core.microbatch.split(batch()[0], 2),
                     lambda: torch.utils.checkpoint.checkpoint(lambda x: x, batch()[0])):
            with pytest.raises(ReferenceDisabled, match=r"disabled while your work is graded: write this part"):
                call()


def test_guard_is_lifted_afterwards_even_after_an_error() -> None:
    with pytest.raises(ZeroDivisionError), learner_only("partition"):
        1 / 0  # noqa: B018
    assert balance_by_cost([1.0, 2.0, 3.0], 2) == [2, 1]
    assert len(gpipe_schedule(2, 2)) == 6


def test_only_the_named_part_is_guarded() -> None:
    with learner_only("partition"):
        assert len(gpipe_schedule(2, 2)) == 6
        with pytest.raises(ReferenceDisabled):
            balance_by_cost([1.0], 1)


def test_learner_policy_that_leans_on_the_reference_fails_inside_the_engine() -> None:
    class Lazy(Recompute):
        pass

    pipe = GPipe(small_model(), partitions=2, chunks=2, checkpoint=Lazy())
    with pytest.raises(gpipe_core.StageError, match=r"Recompute.forward is disabled"):
        run_learner(pipe.step, *batch(), nn.functional.cross_entropy, parts=("recompute",))
    assert pipe.step(*batch(), nn.functional.cross_entropy) > 0


def test_unknown_part() -> None:
    with pytest.raises(ValueError, match=r"unknown parts \['scheduler'\]"), learner_only("scheduler"):
        pass


def test_a_learner_table_runs_under_the_schedule_guard() -> None:
    table = gpipe_schedule(2, 2)  # stands in for the learner's own table
    for executor in ("threads", "inline"):
        with learner_only("schedule"):
            pipe = GPipe(small_model(), partitions=2, chunks=2, schedule=table, executor=executor)
            assert pipe.step(*batch(), nn.functional.cross_entropy) > 0

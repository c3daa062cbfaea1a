"""Schedules as data: golden tables, and the validator's rejections naming the action."""

from __future__ import annotations

import pytest

from gpipe_core.schedules.schedule import (
    Action,
    ScheduleError,
    gpipe_schedule,
    one_f_one_b_schedule,
    stage_orders,
    ticks_from_orders,
)
from gpipe_core.schedules.validation import render, resolve, validate

DESIGN_TABLE = """\
tick:     0    1    2    3    4    5    6    7    8    9   10   11   12   13
stage 0: F0   F1   F2   F3    .    .    .    .    .    .   B3   B2   B1   B0
stage 1:  .   F0   F1   F2   F3    .    .    .    .   B3   B2   B1   B0    .
stage 2:  .    .   F0   F1   F2   F3    .    .   B3   B2   B1   B0    .    .
stage 3:  .    .    .   F0   F1   F2   F3   B3   B2   B1   B0    .    .    ."""

ONE_F_ONE_B_TABLE = """\
tick:     0    1    2    3    4    5    6    7    8    9   10   11   12   13
stage 0: F0   F1   F2   F3    .    .    .   B0    .   B1    .   B2    .   B3
stage 1:  .   F0   F1   F2    .    .   B0   F3   B1    .   B2    .   B3    .
stage 2:  .    .   F0   F1    .   B0   F2   B1   F3   B2    .   B3    .    .
stage 3:  .    .    .   F0   B0   F1   B1   F2   B2   F3   B3    .    .    ."""


def test_gpipe_golden_table() -> None:
    assert render(gpipe_schedule(4, 4), 4) == DESIGN_TABLE


def test_1f1b_golden_table() -> None:
    assert render(one_f_one_b_schedule(4, 4), 4) == ONE_F_ONE_B_TABLE


def test_render_wide_labels() -> None:
    text = render(gpipe_schedule(12, 2), 2)
    assert text.splitlines()[1].startswith("stage 0:  F0    F1")
    assert "B11" in text


@pytest.mark.parametrize("M", [1, 2, 5, 16])
@pytest.mark.parametrize("K", [1, 2, 3, 6])
def test_builtin_schedules_are_valid_and_as_long_as_theory(M: int, K: int) -> None:
    for make in (gpipe_schedule, one_f_one_b_schedule):
        table = validate(make(M, K), M, K)
        assert len(table) == 2 * (M + K - 1)
        assert sum(len(t) for t in table) == 2 * M * K


def test_1f1b_bounds_in_flight_microbatches() -> None:
    M, K = 8, 4
    for j, order in enumerate(stage_orders(one_f_one_b_schedule(M, K), K)):
        in_flight = peak = 0
        for a in order:
            in_flight += 1 if a.kind == "F" else -1
            peak = max(peak, in_flight)
        assert peak == K - j
    assert max(sum(a.kind == "F" for a in order[:M]) for order in stage_orders(gpipe_schedule(M, K), K)) == M


def _table(M: int = 2, K: int = 2) -> list[list[Action]]:
    return [list(t) for t in gpipe_schedule(M, K)]


def test_rejects_missing_action() -> None:
    table = _table()
    table[-1] = []
    with pytest.raises(ScheduleError, match=r"B0@stage0 is missing"):
        validate(table, 2, 2)


def test_rejects_repeated_action() -> None:
    table = _table()
    table.append([Action("F", 1, 1)])
    with pytest.raises(ScheduleError, match=r"F1@stage1 is repeated"):
        validate(table, 2, 2)


def test_rejects_two_actions_on_one_stage_in_a_tick() -> None:
    table = _table()
    table[0] = [Action("F", 0, 0), Action("F", 1, 0)]
    table[1] = [a for a in table[1] if a != Action("F", 1, 0)]
    with pytest.raises(ScheduleError, match=r"stage 0 runs both F0@stage0 and F1@stage0 at tick 0"):
        validate(table, 2, 2)


def test_rejects_dependency_out_of_order() -> None:
    # F0 on stage 1 at the same tick as F0 on stage 0: it has no input yet.
    table = _table()
    table[0] = [Action("F", 0, 0), Action("F", 0, 1)]
    table[1] = [Action("F", 1, 0)]
    with pytest.raises(ScheduleError, match=r"F0@stage1 runs at tick 0 but depends on F0@stage0"):
        validate(table, 2, 2)


def test_rejects_backward_out_of_order() -> None:
    # Stage 0 runs B0 before stage 1 has sent its gradient.
    table = [[Action("F", 0, 0)], [Action("F", 0, 1)], [Action("B", 0, 0)], [Action("B", 0, 1)]]
    with pytest.raises(ScheduleError, match=r"deadlock|B0@stage0 runs at tick 2 but depends on B0@stage1"):
        validate(table, 1, 2)


def test_rejects_deadlock_naming_the_stuck_actions() -> None:
    orders = [[Action("B", 0, 0), Action("F", 0, 0)], [Action("F", 0, 1), Action("B", 0, 1)]]
    with pytest.raises(ScheduleError, match=r"deadlock.*B0@stage0 waits for .*F0@stage0"):
        ticks_from_orders(orders)
    table = [[Action("B", 0, 0)], [Action("F", 0, 0)], [Action("F", 0, 1)], [Action("B", 0, 1)]]
    with pytest.raises(ScheduleError, match=r"deadlock"):
        validate(table, 1, 2)


def test_rejects_out_of_range_and_bad_cells() -> None:
    with pytest.raises(ScheduleError, match=r"out of range"):
        validate([[Action("F", 5, 0)]], 2, 2)
    with pytest.raises(ScheduleError, match=r"not an Action"):
        validate([[("F", 0, 0)]], 1, 1)
    with pytest.raises(ScheduleError, match=r"kind must be one of 'F', 'B', 'I', 'W'"):
        validate([[Action("X", 0, 0)]], 1, 1)  # type: ignore[arg-type]


def test_resolve_names_and_errors() -> None:
    assert resolve("GPipe", 2, 2) == gpipe_schedule(2, 2)
    with pytest.raises(ValueError, match=r"unknown schedule 'zero-bubble'.*1f1b"):
        resolve("zero-bubble", 2, 2)

"""The overlapped F&B cell (torch's OVERLAP_F_B): validated, timed, sized and run like any other cell.

Tables here are built by hand (1F1B with its steady-state F, B pairs fused into
overlaps), independent of DualPipeV's builder, so the grammar is tested on its
own: what the validator refuses and why, what the walker and the simulator make
of the cell (unit costs F = I = W = 1, B = 2; F&B = F + B unless Costs.overlap
says otherwise), and that the engine leaves the sequential model's gradients.
"""

from __future__ import annotations

import pytest
import torch
from helpers.engine import assert_grads_close, batch, small_model
from torch import nn

from gpipe_core import GPipe, sequential_step
from gpipe_core.schedules.schedule import (
    Action,
    Overlap,
    ScheduleError,
    flatten,
    one_f_one_b_schedule,
    stage_orders,
    ticks_from_orders,
)
from gpipe_core.schedules.validation import render, validate
from gpipe_core.sim.simulate import UNIT, Costs, peak_memory, simulate

CE = nn.functional.cross_entropy


def overlapped_1f1b(M: int, K: int) -> list[list[Overlap | Action]]:
    """1F1B whose steady-state pairs 'F(i+w), B(i)' on a stage each run as one overlapped F&B cell."""
    orders = []
    for order in stage_orders(one_f_one_b_schedule(M, K), K):
        fused: list[Overlap | Action] = []
        for a in order:
            if a.kind == "B" and fused and isinstance(fused[-1], Action) and fused[-1].kind == "F" \
                    and fused[-1].microbatch != a.microbatch:
                fused[-1] = Overlap(fused[-1], a)
            else:
                fused.append(a)
        orders.append(fused)
    return ticks_from_orders(orders)


def test_an_overlap_is_one_cell_of_two_actions() -> None:
    M, K = 4, 2
    table = validate(overlapped_1f1b(M, K), M, K)
    cells = [c for tick in table for c in tick]
    overlaps = [c for c in cells if isinstance(c, Overlap)]
    assert len(overlaps) == M - 1 and len(list(flatten(table))) == 2 * M * K  # every F and B once
    assert len(table) > len(one_f_one_b_schedule(M, K))  # a cell waits for both halves' inputs: more ticks
    assert "F2&B1" in render(table) and "F1&B0" in render(table)


def test_the_validator_names_what_is_wrong_with_an_overlap() -> None:
    good = overlapped_1f1b(4, 2)
    cases = [
        (Overlap(Action("F", 1, 0), Action("F", 2, 0)), r"must pair a forward with a backward"),
        (Overlap(Action("B", 1, 0), Action("F", 2, 0)), r"must pair a forward with a backward"),
        (Overlap(Action("F", 1, 0), Action("B", 0, 1)), r"pairs stages on devices 0 and 1: an overlapped F&B runs"),
    ]
    for cell, message in cases:
        with pytest.raises(ScheduleError, match=message):
            validate([[cell]], 4, 2)
    with pytest.raises(ScheduleError, match=r"one micro-batch on one stage: the backward needs that forward's result"):
        validate([[Overlap(Action("F", 0, 0), Action("B", 0, 0))]], 1, 1)
    with pytest.raises(ScheduleError, match=r"deadlock.*\(F0@stage1 & B0@stage0\) waits for B0@stage1\)"):
        validate([[Action("F", 0, 0)], [Overlap(Action("F", 0, 1), Action("B", 0, 0))], [Action("B", 0, 1)]], 1, 2,
                 placement=[0, 0])
    clash = [list(t) for t in good]
    t = next(n for n, tick in enumerate(clash) if any(isinstance(c, Overlap) and c.stage == 0 for c in tick))
    clash[t].append(Action("W", 0, 0))
    with pytest.raises(ScheduleError, match=rf"stage 0 runs both \(F.*\) and W0@stage0 at tick {t}"):
        validate(clash, 4, 2)
    twice = [list(t) for t in good] + [[Action("F", 2, 0)]]
    with pytest.raises(ScheduleError, match=r"F2@stage0 is repeated"):
        validate(twice, 4, 2)


def test_the_simulator_times_an_overlap_as_one_cell() -> None:
    M, K = 6, 3
    table = overlapped_1f1b(M, K)
    plain = simulate(one_f_one_b_schedule(M, K), K, UNIT)
    same = simulate(table, K, UNIT)  # F&B = F + B: the cell takes what its halves take in turn
    assert sum(e.duration for e in same.events) == sum(e.duration for e in plain.events) == 3 * M * K
    faster = simulate(table, K, Costs(forward=1, backward=2, input_grad=1, weight_grad=1, overlap=2))
    assert faster.span < same.span
    per_device = {d: sorted((e.start, e.end) for e in faster.events if e.stage == d) for d in range(K)}
    for spans in per_device.values():  # the two halves are drawn end to end: a device never runs two at once
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    f = next(e for e in faster.events if (e.kind, e.microbatch, e.stage) == ("F", 3, 0))
    b = next(e for e in faster.events if (e.kind, e.microbatch, e.stage) == ("B", 1, 0))
    assert (f.end, f.duration, b.duration) == (b.start, pytest.approx(2 / 3), pytest.approx(4 / 3))  # 1 : 2 of 2
    assert peak_memory(table, K, costs=UNIT) == peak_memory(one_f_one_b_schedule(M, K), K, costs=UNIT)


def test_a_deadlock_names_the_overlap() -> None:
    orders = [[Overlap(Action("F", 1, 0), Action("B", 0, 0)), Action("F", 0, 0)], [Action("F", 0, 1),
                                                                                    Action("B", 0, 1)]]
    with pytest.raises(ScheduleError, match=r"deadlock.*\(F1@stage0 & B0@stage0\) waits for .*F0@stage0"):
        ticks_from_orders(orders)


@pytest.mark.parametrize("executor", ["threads", "inline"])
@pytest.mark.parametrize("checkpoint", ["always", "except_last", "never"])
def test_the_engine_runs_overlaps_exactly(executor: str, checkpoint: str) -> None:
    M, K = 5, 3
    x, y = batch(n=11)
    model, reference = small_model(layers=9, dropout=0.3), small_model(layers=9, dropout=0.3)
    with GPipe(model, partitions=K, chunks=M, schedule=overlapped_1f1b(M, K), checkpoint=checkpoint,
               executor=executor) as pipe:
        loss = pipe.step(x, y, CE, seed=2)
    expected = sequential_step(reference, x, y, CE, balance=pipe.balance, chunks=M, seed=2)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    assert_grads_close(model, reference)
    ran = {(e.kind, e.microbatch, e.stage): e for e in pipe.trace.events}
    overlaps = [c for tick in pipe.table for c in tick if isinstance(c, Overlap)]
    assert overlaps and len(ran) >= 2 * M * K
    for cell in overlaps:  # a CPU worker runs the forward half, then the backward half
        f, b = (ran[(a.kind, a.microbatch, a.stage)] for a in cell.actions)
        assert f.end <= b.start

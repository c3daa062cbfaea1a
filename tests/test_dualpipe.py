"""DualPipe, two directions and parameters held twice: DeepSeek's closed forms, and the table run exactly.

Unit costs: F = I = W = 1, B = 2 per stage copy (a stage being 1/K of the model), an overlapped
F&B = F + B = 3. "Held" counts (micro-batch, stage copy) activations a device keeps.
"""

from __future__ import annotations

import copy

import pytest
import torch
from helpers.counters import Counter
from helpers.engine import assert_grads_close, batch, small_model
from torch import nn

from gpipe_core import sequential_step
from gpipe_core.engine.common import StageError
from gpipe_core.engine.two_way import TwoWayPipe
from gpipe_core.schedules.actions import Action, Cell, Overlap, flatten
from gpipe_core.schedules.bidirectional import check_dualpipe, dualpipe_schedule, measure, timeline
from gpipe_core.schedules.schedule import ScheduleError, device_orders, v_placement
from gpipe_core.schedules.validation import validate
from gpipe_core.schedules.zoo import BUILTINS
from gpipe_core.sim import theory

SIZES = [(K, M) for K in (2, 4, 6, 8, 10) for M in sorted({2 * K, 2 * K + 2, 3 * K + 3 * K % 2, 5 * K})]


@pytest.mark.parametrize(("K", "M"), SIZES)
def test_dualpipe_meets_deepseeks_forms(K: int, M: int) -> None:
    table = check_dualpipe(dualpipe_schedule(M, K), M, K)
    run = measure(table, K)
    # 3M of work per device; each idles DeepSeek's (PP/2-1)(F&B + B - 3W) with PP = K ranks
    assert run.step == 3 * M + theory.dualpipe_bubble(K // 2) == 3 * M + K - 2
    assert run.held == [K + 1] * K  # DeepSeek's PP + 1 activations, 1F1B's first device holds PP
    kinds = [a.kind for a in flatten(table)]
    assert kinds.count("F") == M * K  # M/2 micro-batches through 2K stage copies: every micro-batch through K chunks


@pytest.mark.parametrize("K", [2, 4, 6])
def test_each_device_holds_two_chunks_and_each_micro_batch_crosses_k_devices(K: int) -> None:
    placement = v_placement(K)  # stage copy s < K: direction 0's chunk s; K + j: direction 1's chunk j
    for d in range(K):
        assert sorted(s % K for s in range(2 * K) if placement[s] == d) == sorted({d, K - 1 - d})
    assert [placement[s] for s in range(K)] == list(range(K))  # direction 0 enters at device 0
    assert [placement[K + j] for j in range(K)] == list(reversed(range(K)))  # direction 1 at device K-1


@pytest.mark.parametrize(("K", "M", "costs"), [(4, 8, (1, 2, 1, 1)), (6, 14, (1, 2.5, 1.5, 1)), (2, 6, (2, 3, 1, 2))])
def test_the_timeline_is_the_measured_step_drawn(K: int, M: int, costs: tuple[float, ...]) -> None:
    table = dualpipe_schedule(M, K)
    run, trace = measure(table, K, *costs), timeline(table, K, *costs)
    f, b, i, w = costs
    assert trace.span == run.step and trace.placement == v_placement(K)
    assert i + w == b  # a split backward costs what a whole one does
    for d in range(K):  # each device: M/2 micro-batches on each of its two chunks, F and a whole backward each
        assert trace.busy(d) == pytest.approx(M * (f + b))
    assert sorted(e.microbatch for e in trace.events if e.kind == "F") == sorted(list(range(M)) * K)  # the batch's


@pytest.mark.parametrize(("K", "M"), [(2, 4), (4, 8), (6, 14)])
def test_direction_one_is_direction_zero_seen_from_the_other_end(K: int, M: int) -> None:
    tick = {a: t for t, cells in enumerate(dualpipe_schedule(M, K)) for a in flatten([cells])}
    for a, t in tick.items():
        if a.stage < K:  # depth s of direction 0 on device s; depth s of direction 1 on device K-1-s
            assert tick[Action(a.kind, a.microbatch, K + a.stage)] == t


def test_overlapped_cells_and_what_they_save() -> None:
    K, M = 4, 12
    table = dualpipe_schedule(M, K)
    overlaps = [c for tick in table for c in tick if isinstance(c, Overlap)]
    assert overlaps and all(c.forward.kind == "F" and c.backward.kind == "B" for c in overlaps)
    faster = measure(table, K, overlap=2)  # an F&B cheaper than F + B: communication hidden behind compute
    assert faster.step < measure(table, K).step and faster.held == [K + 1] * K  # memory depends on order only
    assert theory.dualpipe_bubble(K // 2, fb=2) == K // 2 - 1


def test_its_orders_are_dualpipevs_on_each_half() -> None:
    """Devices d and K-1-d both run DualPipeV's device-d order for K/2 devices and M/2 micro-batches."""
    K, M = 4, 8
    ours = device_orders(dualpipe_schedule(M, K), v_placement(K))
    theirs = device_orders(BUILTINS["dualpipev"].build(M // 2, K // 2), v_placement(K // 2))
    def folded(cell: Cell) -> Cell:  # a stage copy as DualPipeV's V stage: depth in the V, i.e. s mod K
        if isinstance(cell, Overlap):
            return Overlap(folded(cell.forward), folded(cell.backward))  # type: ignore[arg-type]
        return Action(cell.kind, cell.microbatch, cell.stage % K)

    for r in range(K):
        assert [folded(c) for c in ours[r]] == theirs[min(r, K - 1 - r)]


def test_the_cut_is_what_the_one_way_validator_does_not_know() -> None:
    K, M = 4, 8
    table = dualpipe_schedule(M, K)
    with pytest.raises(ScheduleError):  # a V validator makes stage K wait for stage K-1: a different schedule
        validate(table, M // 2, K, v_placement(K))
    broken = [list(tick) for tick in table]
    first = next(t for t, tick in enumerate(broken) if any(a.kind == "B" for a in flatten([tick])))
    broken[0], broken[first] = broken[first], broken[0]
    with pytest.raises(ScheduleError, match="depends on"):
        check_dualpipe(broken, M, K)
    with pytest.raises(ScheduleError, match="needs one F and one backward"):
        check_dualpipe(table[:-1], M, K)


@pytest.mark.parametrize(("M", "K", "message"), [
    (8, 3, r"even number of devices K \(got K=3\): use K=4"),
    (7, 4, r"M even and M >= 2K, half .*\(got M=7, K=4\): use M=8"),
    (6, 4, r"\(got M=6, K=4\): use M=8"),
])
def test_dualpipe_names_its_conditions(M: int, K: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dualpipe_schedule(M, K)


# -- the table run: two directions, the chunks' copies, exact against the sequential model ---------------------------

CE = nn.functional.cross_entropy


@pytest.mark.parametrize("executor", ["inline", "threads"])
@pytest.mark.parametrize(("K", "M", "checkpoint", "dropout"), [
    (2, 4, "never", 0.0), (2, 6, "always", 0.3), (4, 8, "except_last", 0.3), (4, 10, "never", 0.2)])
def test_the_table_runs_equal_to_the_sequential_model(K: int, M: int, checkpoint: str, dropout: float,
                                                      executor: str) -> None:
    model = small_model(layers=8, dropout=dropout)
    reference = copy.deepcopy(model)
    x, y = batch(n=19)  # 19 samples: micro-batches of unequal size, in both directions
    with TwoWayPipe(model, partitions=K, chunks=M, checkpoint=checkpoint, executor=executor) as pipe:
        loss = pipe.step(x, y, CE, seed=3)
    expected = sequential_step(reference, x, y, CE, balance=pipe.balance, chunks=M, seed=3)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    assert_grads_close(model, reference)
    assert {a.kind for a in flatten(pipe.table)} == {"F", "B", "I", "W"}  # whole, split and overlapped backwards ran


def test_two_steps_accumulate_and_an_optimizer_step_reaches_both_copies() -> None:
    model, x, y = small_model(layers=8, dropout=0.2), *batch(n=16)
    reference = copy.deepcopy(model)
    opt, ref_opt = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, reference))
    with TwoWayPipe(model, partitions=2, chunks=4, executor="threads") as pipe:
        for step in range(2):
            losses = pipe.step(x, y, CE, seed=step), pipe.step(x, y, CE, seed=10 + step)  # no zero_grad between
            want = [sequential_step(reference, x, y, CE, balance=pipe.balance, chunks=4, seed=s)
                    for s in (step, 10 + step)]
            torch.testing.assert_close(torch.stack(losses), torch.stack(want), rtol=1e-5, atol=1e-7)
            assert_grads_close(model, reference)
            for o in (opt, ref_opt):
                o.step()
                o.zero_grad()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mean_and_sum_losses_and_one_sample_micro_batches(reduction: str) -> None:
    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return CE(out, target, reduction=reduction)

    model = small_model(layers=4)
    reference = copy.deepcopy(model)
    x, y = batch(n=8)
    with TwoWayPipe(model, partitions=4, chunks=8) as pipe:  # 8 micro-batches of one sample
        loss = pipe.step(x, y, loss_fn, reduction=reduction)
    expected = loss_fn(reference(x), y)
    expected.backward()
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-5, atol=1e-6)
    assert_grads_close(model, reference)


def test_buffers_the_copies_change_reach_the_model() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Counter(), Counter(), Counter(), nn.Linear(12, 4))
    reference = copy.deepcopy(model)
    x, y = batch(n=12)
    with TwoWayPipe(model, partitions=2, chunks=6, checkpoint="always") as pipe:  # recomputation counts once
        pipe.step(x, y, CE, seed=1)
    sequential_step(reference, x, y, CE, balance=pipe.balance, chunks=6, seed=1)
    for (name, b), c in zip(model.named_buffers(), reference.buffers()):
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    assert int(model[0].calls) == 6  # once per micro-batch, whichever direction ran it


def test_a_failing_stage_is_named_and_stops_every_thread() -> None:
    class Breaks(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("boom")

    model = nn.Sequential(nn.Linear(12, 12), nn.Linear(12, 12), Breaks(), nn.Linear(12, 4))
    with TwoWayPipe(model, partitions=2, chunks=4, executor="threads", timeout=30) as pipe:
        with pytest.raises(StageError, match=r"stage 1 failed in the forward of micro-batch .*ValueError: boom"):
            pipe.step(*batch(n=8), CE)


def test_the_runner_names_what_it_needs() -> None:
    with pytest.raises(ValueError, match="executor must be 'inline' or 'threads'"):
        TwoWayPipe(small_model(layers=4), partitions=2, chunks=4, executor="processes")
    with pytest.raises(ValueError, match=r"even number of devices K \(got K=3\)"):
        TwoWayPipe(small_model(layers=6), partitions=3, chunks=6)
    with pytest.raises(ValueError, match=r"balance \[4, 4\] has 2 chunks but DualPipe on K=4 .* give 4 layer counts"):
        TwoWayPipe(small_model(layers=8), partitions=4, chunks=8, balance=[4, 4])

"""The schedule frontier: looped BFS, DualPipeV, V-Min, V-Half and V-ZB, exact and against their closed forms.

Unit costs throughout (gpipe_core.sim.simulate.UNIT): F = I = W = 1, B = 2 per stage, and an
overlapped F&B = F + B = 3 (what the engine's CPU worker takes: it runs the two halves in
turn). "Held" is the peak number of (micro-batch, stage) activations a device keeps, in
stages (two stages are one micro-batch's worth on a V-shaped device). Looped BFS and
DualPipeV are held action for action to torch.distributed.pipelining's own classes; the
V schedules' memory to the controllable-memory paper's figures.
"""

from __future__ import annotations

import pytest

from gpipe_core.distributed import torch_ir
from gpipe_core.schedules.schedule import Action, Overlap, device_orders, flatten, loop_placement, v_placement
from gpipe_core.schedules.validation import validate
from gpipe_core.schedules.vshape import PERIOD, v_half_offsets, v_min_offsets, v_zb_block_schedule, v_zb_offsets
from gpipe_core.schedules.zoo import BUILTINS
from gpipe_core.sim import theory
from gpipe_core.sim.simulate import UNIT, Costs, peak_memory, simulate

NEW = ("looped-bfs", "dualpipev", "v-min", "v-half", "v-zb")


def measure(name: str, M: int, K: int, costs: Costs = UNIT) -> tuple[float, list[int]]:
    """(step time, peak held per device) of a built-in's table under ``costs``, after validating it."""
    b = BUILTINS[name]
    table, placement = b.build(M, K), b.placement(K)
    validate(table, M, K, placement)
    step = simulate(table, K, costs, placement=placement).span
    return step, [int(h) for h in peak_memory(table, K, costs=costs, placement=placement)]


@pytest.mark.parametrize(("K", "M"), [(K, M) for K in (1, 2, 3, 4) for M in (1, K, 2 * K + 1)])
@pytest.mark.parametrize("V", [2, 3])
def test_looped_bfs_is_torchs(K: int, M: int, V: int) -> None:
    theirs = torch_ir.import_torch("ScheduleLoopedBFS", K, M, V)
    assert theirs.valid and theirs.placement == loop_placement(K, V)
    from gpipe_core.schedules.breadth_first import looped_bfs_schedule

    assert device_orders(looped_bfs_schedule(M, K, V), loop_placement(K, V)) == theirs.orders


@pytest.mark.parametrize(("K", "M"), [(K, M) for K in range(1, 6) for M in range(1, 3 * K + 2)])
def test_looped_bfs_closed_form(K: int, M: int) -> None:
    step, held = measure("looped-bfs", M, K)
    # fill and drain cross K-1 devices once (3(K-1)); with M < K a device also waits K-M per extra loop
    assert step == theory.step_units("looped-bfs", M, K) == 6 * M + 3 * (K - 1) + 3 * max(0, K - M)
    assert held == theory.peak_held("looped-bfs", M, K) == [2 * M] * K  # every forward before any backward
    if M >= K:  # the bubble relative to the work is interleaved 1F1B's (K-1)/(VM)
        assert (step - 6 * M) / (6 * M) == pytest.approx(theory.interleaved_bubble(M, K, 2))


@pytest.mark.parametrize(("K", "M"), [(K, M) for K in range(1, 7) for M in (2 * K, 2 * K + 1, 3 * K, 5 * K)])
def test_dualpipev_is_torchs_and_meets_deepseeks_forms(K: int, M: int) -> None:
    theirs = torch_ir.import_torch("ScheduleDualPipeV", K, M)
    table = BUILTINS["dualpipev"].build(M, K)
    assert theirs.valid and device_orders(table, v_placement(K)) == theirs.orders  # cell for cell, overlaps too
    step, held = measure("dualpipev", M, K)
    # 6M units of work per device; each idles DeepSeek's (PP/2-1)(F&B + B - 3W) with PP = 2K: 2(K-1)
    assert step == theory.step_units("dualpipev", M, K) == 6 * M + theory.dualpipe_bubble(K) == 6 * M + 2 * (K - 1)
    assert held == theory.peak_held("dualpipev", M, K) == [2 * K + 1] * K  # DeepSeek's PP+1 activations
    cells = [c for tick in table for c in tick]
    overlaps = [c for c in cells if isinstance(c, Overlap)]
    # step 4 overlaps two pairs per round on every device (but the last's first), step 5 one
    assert len(overlaps) == sum(2 * (M - 2 * K + d + 1) - (d == K - 1) + (K - 1 - d) for d in range(K))


def test_dualpipev_gains_what_its_overlap_saves() -> None:
    """With F&B cheaper than F + B the same table is shorter; DeepSeek's bubble shrinks with it."""
    K, M = 4, 8
    faster = Costs(forward=1, backward=2, input_grad=1, weight_grad=1, overlap=2)
    step, held = measure("dualpipev", M, K, faster)
    assert step < theory.step_units("dualpipev", M, K)
    assert held == [2 * K + 1] * K  # memory depends on the order only
    assert theory.dualpipe_bubble(K, fb=2) == K - 1 < theory.dualpipe_bubble(K)


def test_dualpipev_names_its_condition() -> None:
    with pytest.raises(ValueError, match=r"DualPipeV needs M >= 2K .*\(got M=7, K=4\): use M >= 8"):
        BUILTINS["dualpipev"].build(7, 4)
    with pytest.raises(ValueError, match=r"holds for M >= 2K \(got M=7, K=4\)"):
        theory.step_units("dualpipev", 7, 4)


@pytest.mark.parametrize("offsets", [v_min_offsets, v_half_offsets])
@pytest.mark.parametrize("K", range(1, 13))
def test_v_blocks_fit_their_period_and_respect_dependencies(offsets, K: int) -> None:  # noqa: ANN001
    """The building block itself: four passes in distinct slots of a 6-unit period, each hop one later."""
    blocks = [offsets(K, d) for d in range(K)]
    for f_down, f_up, i_up, i_down in blocks:
        assert len({t % PERIOD for t in (f_down, f_up, i_up, i_down)}) == 4
    for d in range(K - 1):  # down forwards and up-stage input gradients flow d -> d+1, the others back
        assert blocks[d + 1][0] > blocks[d][0] and blocks[d + 1][2] > blocks[d][2]
        assert blocks[d][1] > blocks[d + 1][1] and blocks[d][3] > blocks[d + 1][3]
    assert blocks[K - 1][1] > blocks[K - 1][0] and blocks[0][2] > blocks[0][1] and blocks[K - 1][3] > blocks[K - 1][2]


@pytest.mark.parametrize(("K", "M"), [(K, M) for K in range(1, 9) for M in (K, K + 1, 2 * K, 3 * K + 1)])
def test_v_min_closed_form(K: int, M: int) -> None:
    step, held = measure("v-min", M, K)
    assert step == theory.step_units("v-min", M, K) == 6 * M + theory.v_min_idle(K)
    assert held == theory.peak_held("v-min", M, K)
    assert max(held) == 2 * ((K + 4) // 3)  # the paper's (p+4)//3 micro-batches, about a third of 1F1B's p
    if K > 1:  # idle per device about 4(K-1): two thirds of 1F1B's 6(K-1) in these units (the paper's ~2p/3m)
        assert abs(theory.v_min_idle(K) - 4 * (K - 1)) == 1


@pytest.mark.parametrize(("K", "M"), [(K, M) for K in range(1, 9) for M in (K + 1, 2 * K, 3 * K + 1)])
def test_v_half_closed_form(K: int, M: int) -> None:
    step, held = measure("v-half", M, K)
    assert step == theory.step_units("v-half", M, K) == 6 * M + theory.v_half_idle(K)
    assert held == theory.peak_held("v-half", M, K) == [2 * ((K + 2) // 2)] * K  # the paper's (p+2)//2: half of p
    if K >= 3:  # idle between half of 1F1B's 6(K-1) (the paper's, with its reordered fill) and two thirds
        assert 3 * (K - 1) <= theory.v_half_idle(K) <= 4 * (K - 1)


@pytest.mark.parametrize("K", range(2, 7))
def test_v_zb_block_is_zbvs_steady_state(K: int) -> None:
    """V-ZB's block is what ZB-V's middle micro-batches repeat, every 6 units, on every device."""
    M = 6 * K
    tick = {a: t for t, cells in enumerate(BUILTINS["zbv"].build(M, K)) for a in flatten([cells])}
    passes = (("F", 0), ("F", 1), ("I", 1), ("I", 0), ("W", 1), ("W", 0))  # (kind, up?) in the block's order
    for n in (M // 2 - 1, M // 2, M // 2 + 1):
        seen = [[tick[Action(kind, n, 2 * K - 1 - d if up else d)] - PERIOD * n for kind, up in passes]
                for d in range(K)]
        shift = seen[0][0] - v_zb_offsets(K, 0)[0]
        assert seen == [[t + shift for t in v_zb_offsets(K, d)] for d in range(K)]


def window_idle(name: str, M: int, K: int) -> list[float]:
    """Each device's idle time between its own first and last action (the paper's bubble counts only this)."""
    b = BUILTINS[name]
    trace = simulate(b.build(M, K), K, UNIT, placement=b.placement(K))
    idle = []
    for d in range(K):
        mine = [e for e in trace.events if trace.row(e.stage) == d]
        idle.append(max(e.end for e in mine) - min(e.start for e in mine) - sum(e.duration for e in mine))
    return idle


@pytest.mark.parametrize(("K", "M"), [(K, M) for K in range(1, 9) for M in sorted({2 * K - 1, 2 * K, 3 * K + 1, 24})])
def test_v_zb_closed_form(K: int, M: int) -> None:
    """M >= 2K-1: the paper's p micro-batches on every device and no gap inside any device's window; the step
    is ZB-V's 6M + K - 1, the K-1 being the last device's wait for its first input."""
    step, held = measure("v-zb", M, K)
    assert step == theory.step_units("v-zb", M, K) == 6 * M + K - 1 == measure("zbv", M, K)[0]
    assert held == theory.peak_held("v-zb", M, K) == [2 * K] * K  # 1F1B's K whole micro-batches
    assert window_idle("v-zb", M, K) == [0] * K


@pytest.mark.parametrize(("K", "M"), [(K, M) for K in range(1, 9) for M in range(1, 4 * K + 2)])
def test_v_zb_reordering_beats_the_block_without_more_memory(K: int, M: int) -> None:
    """Any M: the peak is min(2K, 2M, M+1+d) on device d, as for the block repeated and squeezed as it stands,
    whose step is 6M + 2(K-1) + 2max(0, K-M); the reordered fill and drain are never slower, and strictly
    faster once they can be covered (M >= 2K-1)."""
    step, held = measure("v-zb", M, K)
    assert held == theory.peak_held("v-zb", M, K) == [min(2 * K, 2 * M, M + 1 + d) for d in range(K)]
    block = v_zb_block_schedule(M, K)
    placement = v_placement(K)
    validate(block, M, K, placement)
    block_step = simulate(block, K, UNIT, placement=placement).span
    assert block_step == 6 * M + 2 * (K - 1) + 2 * max(0, K - M)
    assert [int(h) for h in peak_memory(block, K, costs=UNIT, placement=placement)] == held
    assert step <= block_step and (step < block_step or K == 1 or M < 2 * K - 1)
    if M < 2 * K - 1:
        with pytest.raises(ValueError, match=r"closed form of v-zb holds for M >= 2K-1"):
            theory.step_units("v-zb", M, K)


def test_the_memory_ladder() -> None:
    """At K = 6, M = 12, in micro-batches a device holds: 1F1B 6 (device 0), V-Half 4, V-Min 3; DualPipeV 6.5."""
    K, M = 6, 12
    held = {name: max(measure(name, M, K)[1]) / BUILTINS[name].virtual for name in ("1f1b", "v-half", "v-min",
                                                                                   "dualpipev", "zbv", "v-zb")}
    assert held == {"1f1b": 6, "v-half": 4, "v-min": 3, "dualpipev": 6.5, "zbv": 6, "v-zb": 6}


@pytest.mark.parametrize("name", NEW)
def test_new_tables_round_trip_through_torchs_csv(name: str, tmp_path) -> None:  # noqa: ANN001
    b, K, M = BUILTINS[name], 3, 6
    table, placement = b.build(M, K), b.placement(K)
    path = tmp_path / "table.csv"
    torch_ir.write_csv(table, placement, str(path))
    from torch.distributed.pipelining.schedules import _Action

    rows = [[_Action.from_str(cell) for cell in line.split(",")] for line in path.read_text().splitlines()]
    assert torch_ir.actions_from_torch(rows) == device_orders(table, placement)
    assert sum(a.kind == "F" for a in flatten(table)) == M * len(placement)  # overlaps opened: every forward once


@pytest.mark.parametrize("checkpoint", ["never", "always"])
@pytest.mark.parametrize("name", NEW)
def test_predicted_bytes_equal_measured_bytes(name: str, checkpoint: str) -> None:
    """The simulator's memory of the table (overlapped cells included) is the bytes the engine's stages hold."""
    import torch

    from gpipe_core import GPipe
    from gpipe_core.sim.simulate import Sizes
    from gpipe_core.workloads.models import mlp

    def energy(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return out.pow(2).mean()

    L, H, N, K, M = 8, 32, 16, 2, 4
    balance = [L // (2 * K)] * (2 * K)
    torch.manual_seed(0)
    with GPipe(mlp(L, H), balance=balance, chunks=1, checkpoint="never") as alone:  # one stage per device
        alone.step(torch.randn(N, H), torch.zeros(N, H), energy, measure_memory=True)
        stored = list(alone.memory)  # what one micro-batch stores on each stage
    torch.manual_seed(0)
    x = torch.randn(N * M, H)
    with GPipe(mlp(L, H), balance=balance, chunks=M, schedule=name, checkpoint=checkpoint) as pipe:
        pipe.step(x, x, energy, measure_memory=True)
    boundary = N * H * 4  # a stage input, also the output its last ReLU saves
    sizes = Sizes(activations=stored, inputs=boundary, boundary_saved=boundary)
    assert peak_memory(pipe.table, K, sizes, recompute=checkpoint == "always", placement=pipe.placement) == pipe.memory

"""The cost-model timeline: exact on unit costs, and the same shape as a measured trace."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gpipe_core import GPipe, gpipe_schedule, one_f_one_b_schedule
from gpipe_core.sim.simulate import Costs, costs_from_trace, simulate
from gpipe_core.sim.theory import bubble_fraction
from gpipe_core.workloads.models import mlp


@pytest.mark.parametrize(("K", "M"), [(1, 1), (2, 3), (4, 4), (8, 32)])
def test_unit_costs_reproduce_the_formula(K: int, M: int) -> None:
    for make in (gpipe_schedule, one_f_one_b_schedule):
        trace = simulate(make(M, K), K)
        assert trace.span == 2 * (M + K - 1)
        assert trace.bubble() == pytest.approx(bubble_fraction(M, K))


def test_uneven_stage_is_the_bottleneck() -> None:
    trace = simulate(gpipe_schedule(8, 2), 2, Costs(forward=[3, 1], backward=[6, 2]))
    util = trace.utilisation()
    assert util[0] > 0.9 and util[1] < 0.4


def test_recompute_adds_boxes() -> None:
    trace = simulate(gpipe_schedule(4, 2), 2, Costs(recompute=1.0), recompute=True)
    assert sum(e.kind == "R" for e in trace.events) == 8
    assert trace.span == 2 * 5 + 4 + 1


def test_costs_from_a_real_trace() -> None:
    torch.manual_seed(0)
    pipe = GPipe(mlp(4, 64), partitions=2, chunks=4, checkpoint="never")
    x = torch.randn(64, 64)
    pipe.step(x, x, nn.functional.mse_loss)
    costs = costs_from_trace(pipe.trace)
    assert all(c > 0 for c in costs.forward) and all(c > 0 for c in costs.backward)
    predicted = simulate(pipe.table, 2, costs)
    assert predicted.span > 0 and len(predicted.events) == len(pipe.trace.events)


# ---------------------------------------------------------------- after GPipe: placement, split backward, memory

L, H, N_MB = 8, 32, 16  # layers, width, samples per micro-batch


def _energy(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return out.pow(2).mean()


def _stored_per_stage(balance: list[int]) -> list[int]:
    """What one micro-batch stores on each stage, measured: one micro-batch, one stage per device, no recompute."""
    torch.manual_seed(0)
    x = torch.randn(N_MB, H)
    with GPipe(mlp(L, H), balance=balance, chunks=1, checkpoint="never") as pipe:
        pipe.step(x, x, _energy, measure_memory=True)
        return list(pipe.memory)


@pytest.mark.parametrize("checkpoint", ["never", "always", "except_last"])
@pytest.mark.parametrize("name", ["gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2", "zbv"])
def test_predicted_memory_equals_measured_bytes(name: str, checkpoint: str) -> None:
    from gpipe_core.schedules.zoo import BUILTINS
    from gpipe_core.sim.simulate import Sizes, peak_memory

    K, M, b = 2, 4, BUILTINS[name]
    balance = [L // (K * b.virtual)] * (K * b.virtual)
    stored = _stored_per_stage(balance)
    torch.manual_seed(0)
    x = torch.randn(N_MB * M, H)
    with GPipe(mlp(L, H), balance=balance, chunks=M, virtual=b.virtual, schedule=name, checkpoint=checkpoint,
               placement=b.placement(K)) as pipe:
        pipe.step(x, x, _energy, measure_memory=True)
        recompute = {"never": False, "always": True, "except_last": [i < M - 1 for i in range(M)]}[checkpoint]
        boundary = N_MB * H * 4  # a stage input: N_MB samples of H float32, also the output its last ReLU saves
        sizes = Sizes(activations=stored, inputs=boundary, boundary_saved=boundary)
        predicted = peak_memory(pipe.table, K, sizes, recompute=recompute, placement=pipe.placement)
        assert predicted == pipe.memory


def test_micro_batches_in_flight_times_bytes() -> None:
    """Equal stages, no recomputation: the peak is the count of micro-batches held times one's bytes."""
    from gpipe_core.schedules.zoo import BUILTINS
    from gpipe_core.sim.simulate import Sizes, peak_memory

    for name in ("gpipe", "1f1b", "zb-h1", "zb-h2"):
        table = BUILTINS[name].build(8, 4)
        units = peak_memory(table, 4)
        assert peak_memory(table, 4, Sizes(activations=1000)) == [1000 * u for u in units]
    assert peak_memory(BUILTINS["1f1b"].build(8, 4), 4) == [4, 3, 2, 1]
    assert peak_memory(BUILTINS["gpipe"].build(8, 4), 4) == [8] * 4


def test_weight_inputs_shrink_what_waits_for_w() -> None:
    """If only W's inputs outlive I, ZB-H2's deferred W's cost less than whole micro-batches.

    K=2, M=8: device 0 peaks in its warm-up (three forwards, nothing waits for W yet);
    device 1 holds one micro-batch between F and I plus two that wait for W: 10 + 2*4.
    """
    from gpipe_core.schedules.zoo import zb_h2_schedule
    from gpipe_core.sim.simulate import Sizes, peak_memory

    table = zb_h2_schedule(8, 2)
    whole = peak_memory(table, 2, Sizes(activations=10))
    part = peak_memory(table, 2, Sizes(activations=10, weight_inputs=4))
    assert whole == [30, 30] and part == [30, 18]


def test_split_costs_and_recompute_on_i() -> None:
    from gpipe_core.schedules.zoo import zb_h1_schedule

    assert Costs(backward=4).duration("I", 0) == 2 == Costs(backward=4).duration("W", 0)
    assert Costs(input_grad=[1, 3], weight_grad=2).duration("I", 1) == 3
    table = zb_h1_schedule(4, 2)
    plain = simulate(table, 2, Costs(forward=1, input_grad=1, weight_grad=1))
    again = simulate(table, 2, Costs(forward=1, input_grad=1, weight_grad=1, recompute=1), recompute=True)
    assert sum(e.kind == "R" for e in again.events) == 8
    for e in again.events:  # every recompute runs right before its I
        if e.kind == "R":
            assert any(f.kind == "I" and f.stage == e.stage and f.microbatch == e.microbatch and f.start == e.end
                       for f in again.events)
    assert again.span > plain.span == 13


def test_placement_draws_devices() -> None:
    from gpipe_core.schedules.schedule import v_placement
    from gpipe_core.schedules.zoo import zbv_schedule

    trace = simulate(zbv_schedule(4, 2), 2, Costs(forward=1, backward=2), placement=v_placement(2))
    assert trace.K == 2 and trace.placement == [0, 1, 1, 0]
    assert trace.span == 25 and trace.bubble() == pytest.approx(1 - 48 / 50)


@pytest.mark.parametrize("name", ["gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2", "zbv"])
def test_the_engine_runs_the_timeline_the_simulator_walks(name: str) -> None:
    """The threaded engine's measured step has the simulator's shape, whatever the machine's load.

    Each device ran its actions in the order the simulator walks them; no
    action began before what it waits for had ended; and the simulator's
    walker, given each action's measured duration and no hand-off, starts every
    action no later than the engine did, so the model adds no wait the engine
    does not have. How close a prediction from mean costs comes in seconds is a
    timing and depends on the machine's load: ``make bench`` measures it (row
    "6 scaling", within 5% on a quiet machine); no test asserts it.
    """
    from gpipe_core.schedules.schedule import dependency_map, device_orders, walk
    from gpipe_core.schedules.zoo import BUILTINS

    b, K, M = BUILTINS[name], 2, 8
    S = K * b.virtual
    torch.manual_seed(0)
    x = torch.randn(4 * M, 16)
    with GPipe(nn.Sequential(*[nn.Linear(16, 16) for _ in range(S)]), balance=[1] * S, virtual=b.virtual,
               placement=b.placement(K), chunks=M, schedule=name, checkpoint="never") as pipe:
        pipe.step(x, x, _energy)
        trace, table, placement = pipe.trace, pipe.table, pipe.placement
    ran = {(e.kind, e.microbatch, e.stage): e for e in trace.events}
    assert len(ran) == len(trace.events) == sum(len(tick) for tick in table)

    def event(a: object) -> object:
        return ran[(a.kind, a.microbatch, a.stage)]

    orders = device_orders(table, placement)
    for d, order in enumerate(orders):
        on_device = sorted((e for e in trace.events if trace.row(e.stage) == d), key=lambda e: (e.start, e.end))
        assert on_device == [event(a) for a in order], f"device {d} did not run its actions in the table's order"
    deps = dependency_map([a for tick in table for a in tick], S)
    early = [(a, w) for a, waits in deps.items() for w in waits if event(a).start < event(w).end]
    assert not early, f"actions began before what they wait for had ended: {early[:3]}"
    t0 = min(e.start for e in trace.events)
    walked = walk(orders, deps, lambda a: event(a).duration)
    late = [a for a, (start, _) in walked.items() if start > event(a).start - t0 + 1e-9]
    assert not late, f"the walker starts these later than the engine did: {late[:3]}"

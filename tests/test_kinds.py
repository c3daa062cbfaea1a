"""The engine runs split backwards (I, W) and virtual stages exactly as the sequential model.

Tables here are built by hand from per-device orders, independent of the
built-in zoo, so the runtime is tested on its own: B split into I then W at
once, W deferred to the end, and two stages per device (loop and V
placements), over every checkpoint mode, both executors, dropout and uneven
micro-batches.
"""

from __future__ import annotations

import pytest
import torch
from helpers.engine import assert_grads_close, batch, small_model
from torch import nn

from gpipe_core import GPipe, ScheduleError, sequential_step, validate
from gpipe_core.engine.split_backward import backward_input
from gpipe_core.schedules.schedule import (
    Action,
    loop_placement,
    one_f_one_b_schedule,
    stage_orders,
    ticks_from_orders,
    v_placement,
)

CE = nn.functional.cross_entropy


def split_table(M: int, K: int, defer_w: bool) -> list[list[Action]]:
    """1F1B with every B cut into I and W: W right after I, or every W deferred to the end."""
    orders = []
    for order in stage_orders(one_f_one_b_schedule(M, K), K):
        out, tail = [], []
        for a in order:
            if a.kind != "B":
                out.append(a)
                continue
            out.append(Action("I", a.microbatch, a.stage))
            (tail if defer_w else out).append(Action("W", a.microbatch, a.stage))
        orders.append(out + tail)
    return ticks_from_orders(orders)


def virtual_table(M: int, placement: list[int], split: bool) -> list[list[Action]]:
    """Fill-drain over S stages placed on devices: each device runs its stages' forwards, then backwards."""
    S, K = len(placement), max(placement) + 1
    orders: list[list[Action]] = [[] for _ in range(K)]
    for s in range(S):
        orders[placement[s]] += [Action("F", i, s) for i in range(M)]
    for s in reversed(range(S)):
        for i in reversed(range(M)):
            orders[placement[s]] += [Action("I", i, s), Action("W", i, s)] if split else [Action("B", i, s)]
    return ticks_from_orders(orders, placement)


def run_both(model_fn, table, M, balance, placement=None, checkpoint="except_last", executor="threads", n=10):
    x, y = batch(n=n)
    reference = model_fn()
    loss_ref = sequential_step(reference, x, y, CE, balance=balance, chunks=M, seed=7)
    model = model_fn()
    with GPipe(model, balance=balance, chunks=M, schedule=table, placement=placement, checkpoint=checkpoint,
               executor=executor) as pipe:
        loss = pipe.step(x, y, CE, seed=7)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-7)
    assert_grads_close(model, reference)
    return pipe


@pytest.mark.parametrize("checkpoint", ["always", "except_last", "never"])
@pytest.mark.parametrize("defer_w", [False, True])
@pytest.mark.parametrize("executor", ["threads", "inline"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_split_backward_equals_sequential(checkpoint: str, defer_w: bool, executor: str, dropout: float) -> None:
    M, K = 4, 3
    pipe = run_both(lambda: small_model(dropout=dropout), split_table(M, K, defer_w), M, [2, 2, 2],
                    checkpoint=checkpoint, executor=executor)
    kinds = {e.kind for e in pipe.trace.events}
    assert {"I", "W"} <= kinds and "B" not in kinds


@pytest.mark.parametrize("placement", [loop_placement(2, 2), v_placement(2)])
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("checkpoint", ["always", "never"])
def test_virtual_stages_equal_sequential(placement: list[int], split: bool, checkpoint: str) -> None:
    M = 3
    pipe = run_both(lambda: small_model(dropout=0.2), virtual_table(M, placement, split), M, [2, 1, 2, 1],
                    placement=placement, checkpoint=checkpoint)
    assert pipe.K == 2 and pipe.S == 4
    assert pipe.trace.placement == placement
    assert {pipe.trace.row(e.stage) for e in pipe.trace.events} == {0, 1}


def test_one_action_per_device_per_tick_with_virtual_stages() -> None:
    table = [[Action("F", 0, 0), Action("F", 0, 2)]]
    with pytest.raises(ScheduleError, match=r"device 0 runs both F0@stage0 and F0@stage2 at tick 0"):
        validate(table, 1, 2, loop_placement(2, 2))


def test_split_backward_validation_names_the_missing_half() -> None:
    table = split_table(2, 2, defer_w=False)
    broken = [[a for a in tick if a != Action("W", 1, 0)] for tick in table]
    with pytest.raises(ScheduleError, match=r"W1@stage0 is missing: a split backward needs both I and W"):
        validate(broken, 2, 2)
    early = [[Action("W", 0, 1)], *table]
    with pytest.raises(ScheduleError, match=r"W0@stage1 is repeated|W0@stage1 runs at tick 0 but depends on I0@stage1"):
        validate(early, 2, 2)


def test_i_then_w_costs_one_backward() -> None:
    """I computes no weight gradient; W computes no input gradient; together they equal B."""
    torch.manual_seed(0)
    layers = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 16))
    x = torch.randn(4, 16, requires_grad=True)
    out = layers(x)
    g = torch.randn_like(out)
    grad_x, work = backward_input(out, g, x, layers.parameters())
    assert all(p.grad is None for p in layers.parameters())
    work.run()
    split = [p.grad.clone() for p in layers.parameters()]
    layers.zero_grad(set_to_none=True)
    x2 = x.detach().requires_grad_()
    layers(x2).backward(g)
    torch.testing.assert_close(grad_x, x2.grad)
    for a, p in zip(split, layers.parameters()):
        torch.testing.assert_close(a, p.grad)


def test_recomputation_leaves_batchnorm_as_without_it() -> None:
    def model() -> nn.Sequential:
        torch.manual_seed(3)
        return nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.BatchNorm1d(8),
                             nn.Linear(8, 3))

    x, y = torch.randn(12, 8), torch.randint(0, 3, (12,))
    states = {}
    for mode in ("never", "always"):
        m = model()
        GPipe(m, balance=[3, 3], chunks=4, checkpoint=mode).step(x, y, CE, seed=0)
        states[mode] = {k: v.clone() for k, v in m.state_dict().items()}
    for k in states["never"]:
        torch.testing.assert_close(states["always"][k], states["never"][k], msg=f"{k} changed by recomputation")
    assert int(states["always"]["1.num_batches_tracked"]) == 4


def test_moving_a_pipe_is_refused_with_the_fix() -> None:
    pipe = GPipe(small_model(), partitions=2)
    with pytest.raises(RuntimeError, match=r"build a new GPipe with devices="):
        pipe.to("cpu")
    with pytest.raises(TypeError):
        GPipe(small_model(), [3, 3])  # settings are keyword-only

"""Every built-in schedule, run on the engine, leaves the sequential model's loss and gradients.

The equivalence grid of the schedules after GPipe: each table of
:mod:`gpipe_core.schedules.zoo` (split backwards, two stages per device, DualPipeV's
overlapped F&B cells) over every checkpoint mode, both executors, dropout and
uneven micro-batches, against :func:`~gpipe_core.sequential_step` with the
same stages and seeds. (Module state, BatchNorm and counters, is held to the
sequential model for every built-in in tests/test_stateful.py.) DualPipe, registered
apart (``zoo.TWO_WAY``: two directions, 2K stage copies), runs through the same
``GPipe`` on both executors in tests/test_dualpipe_gpipe.py.
"""

from __future__ import annotations

import pytest
import torch
from helpers.engine import assert_grads_close, batch, small_model
from torch import nn

from gpipe_core import GPipe, sequential_step
from gpipe_core.schedules.zoo import BUILTINS

CE = nn.functional.cross_entropy
SPLIT = {"zb-h1", "zb-h2", "zbv", "v-min", "v-half", "v-zb", "dualpipev"}  # built-ins that run I and W


@pytest.mark.parametrize("name", sorted(BUILTINS))
@pytest.mark.parametrize("checkpoint", ["always", "except_last", "never"])
@pytest.mark.parametrize("executor", ["threads", "inline"])
@pytest.mark.parametrize(("K", "M", "dropout"), [(2, 4, 0.2), (3, 5, 0.0)])
def test_builtin_schedule_equals_sequential(name: str, checkpoint: str, executor: str, K: int, M: int,
                                            dropout: float) -> None:
    M = max(M, 2 * K) if name == "dualpipev" else M  # DualPipeV needs M >= 2K (tests/test_zoo.py checks the error)
    x, y = batch(n=11)  # 11 samples: micro-batches of unequal size
    model, reference = small_model(layers=12, dropout=dropout), small_model(layers=12, dropout=dropout)
    with GPipe(model, partitions=K, chunks=M, schedule=name, checkpoint=checkpoint, executor=executor) as pipe:
        loss = pipe.step(x, y, CE, seed=5)
    expected = sequential_step(reference, x, y, CE, balance=pipe.balance, chunks=M, seed=5)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    assert_grads_close(model, reference)
    assert pipe.K == K and pipe.S == K * BUILTINS[name].virtual
    ran = {e.kind for e in pipe.trace.events}
    assert ran >= ({"F", "I", "W"} if name in SPLIT else {"F", "B"})
    if name == "dualpipev":
        assert "B" in ran  # whole backwards inside its overlapped F&B cells


def test_virtual_builtin_refuses_another_v() -> None:
    with pytest.raises(ValueError, match=r"runs 2 stages per device, not virtual=3"):
        GPipe(small_model(layers=12), partitions=2, chunks=4, schedule="zbv", virtual=3)


def test_interleaved_names_the_fix_when_a_short_group_deadlocks() -> None:
    from gpipe_core.schedules.zoo import interleaved_schedule

    with pytest.raises(ValueError, match=r"use M a multiple of K, e.g. M=10"):
        interleaved_schedule(7, 5)
    assert interleaved_schedule(10, 5)  # a multiple of K always works

"""Layers with state: a recomputation never changes it, under every checkpoint mode and schedule.

A forward in training mode may update buffers (BatchNorm's running statistics
and ``num_batches_tracked``, or any counter a layer keeps). Re-materialisation
runs some forwards twice; the second run must leave no trace in the state, so
after a step every buffer equals the micro-batched sequential model's. Layers
can ask :func:`gpipe_core.is_recomputing` which run they are in.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import gpipe_core
from gpipe_core import GPipe, sequential_step
from gpipe_core.schedules.zoo import BUILTINS

CE = nn.functional.cross_entropy
MODES = ["always", "except_last", "never"]
SCHEDULES = sorted(BUILTINS)  # DualPipe (zoo.TWO_WAY) refuses BatchNorm: its own test is at the end
K, M, H = 2, 4, 6


class CallCounter(nn.Module):
    """A linear layer that counts its calls and sums its inputs in buffers, and logs is_recomputing()."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden, hidden)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("input_sum", torch.zeros(hidden))
        self.log: list[bool] = []  # is_recomputing() at every call, in call order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(gpipe_core.is_recomputing())
        self.calls += 1
        self.input_sum += x.detach().sum(0)
        return torch.tanh(self.fc(x))


def stateful_model(S: int) -> nn.Sequential:
    """S + 1 layers: BatchNorm and counters spread so that every one of S stages holds state."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.BatchNorm1d(H)]
    layers += [CallCounter(H) if s % 2 else nn.Sequential(nn.Linear(H, H), nn.BatchNorm1d(H), nn.Dropout(0.2))
               for s in range(S - 1)]
    layers.append(CallCounter(H))
    return nn.Sequential(*layers)


def pipe_for(model: nn.Sequential, schedule: str, checkpoint: str) -> GPipe:
    builtin = BUILTINS[schedule]
    S = K * builtin.virtual
    balance = [1] * (S - 1) + [2]
    return GPipe(model, balance=balance, partitions=K, virtual=builtin.virtual, chunks=M, checkpoint=checkpoint,
                 schedule=schedule)


def batch(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, H, generator=g) * 2 + 1, torch.randint(0, H, (n,), generator=g)


@pytest.mark.parametrize("checkpoint", MODES)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_state_after_a_step_equals_the_sequential_model(schedule: str, checkpoint: str) -> None:
    S = K * BUILTINS[schedule].virtual
    model = stateful_model(S)
    ref = copy.deepcopy(model)
    x, y = batch()
    with pipe_for(model, schedule, checkpoint) as pipe:
        for step in range(2):
            pipe.step(x, y, CE, seed=step)
            sequential_step(ref, x, y, CE, balance=pipe.balance, chunks=M, seed=step)
    for (name, got), want in zip(model.named_buffers(), ref.buffers()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    counters = [m for m in model.modules() if isinstance(m, CallCounter)]
    assert all(int(c.calls) == 2 * M for c in counters)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert all(int(bn.num_batches_tracked) == 2 * M for bn in bns)


@pytest.mark.parametrize("checkpoint", MODES)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_is_recomputing_is_true_only_in_recomputation(schedule: str, checkpoint: str) -> None:
    S = K * BUILTINS[schedule].virtual
    model = stateful_model(S)
    x, y = batch()
    with pipe_for(model, schedule, checkpoint) as pipe:
        pipe.step(x, y, CE, seed=0)
    recomputed = {"always": M, "except_last": M - 1, "never": 0}[checkpoint]
    for counter in (m for m in model.modules() if isinstance(m, CallCounter)):
        assert len(counter.log) == M + recomputed
        assert counter.log.count(True) == recomputed
        assert counter.log[0] is False  # the first call of a step is always a real forward
    assert gpipe_core.is_recomputing() is False  # outside a step


def test_is_recomputing_is_false_in_plain_pytorch_and_in_inference() -> None:
    model = stateful_model(2)
    model(batch()[0])
    with GPipe(model, partitions=2, chunks=2, checkpoint="always") as pipe:
        pipe(batch()[0])
    counter = model[-1]
    assert counter.log == [False] * 3


@pytest.mark.parametrize("checkpoint", MODES)
def test_dualpipe_refuses_running_statistics_and_keeps_counters_exact(checkpoint: str) -> None:
    """DualPipe's two directions start a step from the same buffers and update them in two orders: changes that add
    up (counters, sums) are merged exactly, a running average (BatchNorm's) could not be, so it is refused."""
    with pytest.raises(ValueError, match=r"\(BatchNorm1d\) keeps running statistics"):
        GPipe(stateful_model(K), partitions=K, chunks=M, schedule="dualpipe")
    torch.manual_seed(0)
    model = nn.Sequential(CallCounter(H), nn.Dropout(0.2), CallCounter(H), CallCounter(H))
    ref = copy.deepcopy(model)
    x, y = batch()
    with GPipe(model, balance=[2, 2], chunks=M, checkpoint=checkpoint, schedule="dualpipe") as pipe:
        for step in range(2):
            pipe.step(x, y, CE, seed=step)
            sequential_step(ref, x, y, CE, balance=pipe.balance, chunks=M, seed=step)
    for (name, got), want in zip(model.named_buffers(), ref.buffers()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    # the originals run direction 0, micro-batches 0..M/2-1, each recomputed unless "never" (the one micro-batch
    # "except_last" keeps, M-1, goes up direction 1 on the copies); the copies log into their own lists
    recomputed = 0 if checkpoint == "never" else M // 2
    for counter in (m for m in model.modules() if isinstance(m, CallCounter)):
        assert int(counter.calls) == 2 * M  # the copies' calls were added in: once per micro-batch per step
        assert len(counter.log) == 2 * (M // 2 + recomputed) and counter.log.count(True) == 2 * recomputed
        assert counter.log[0] is False

"""Deferred BatchNorm: exactly what equals the full-batch model, and what cannot.

The claims the book makes, one test each:
* the running statistics equal a plain BatchNorm's after one full-batch pass over
  the same inputs (so the model's first BatchNorm equals the full-batch model's),
  and ``num_batches_tracked`` counts steps, not micro-batches;
* training outputs and gradients equal the micro-batched sequential model, which
  normalises each micro-batch by itself; with M > 1 that is not the full-batch
  model, and no option can make it so;
* a plain BatchNorm in the pipe updates its statistics M times per step (the
  pitfall deferral fixes).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gpipe_core import GPipe, sequential_step
from gpipe_core.engine.batchnorm import DeferredBatchNorm, convert_deferred_batch_norm
from gpipe_core.workloads.models import bn_mlp

CE = nn.functional.cross_entropy
MODES = ["always", "except_last", "never"]


def data(n: int = 10, hidden: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(n, hidden, generator=g) + 0.5, torch.randint(0, 3, (n,), generator=g)


def model(hidden: int = 8) -> nn.Sequential:
    torch.manual_seed(0)
    return bn_mlp(5, hidden, classes=3)


def assert_grads_close(a: nn.Module, b: nn.Module) -> None:
    """rtol 1e-5, with an absolute floor of 2e-5 of the model's largest gradient entry.

    The schedule adds micro-batch gradients in another order than the sequential
    loop (backward runs last micro-batch first), and BatchNorm's backward divides
    by a small micro-batch's standard deviation, which magnifies that rounding;
    the bias before a BatchNorm has a true gradient of zero, all rounding. A
    wrong normalisation moves gradients by a fraction of the scale, not 2e-5 of it.
    """
    scale = max(float(q.grad.abs().max()) for q in b.parameters() if q.grad is not None)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert p.grad is not None and q.grad is not None, f"{name} has no gradient"
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=2e-5 * scale, msg=lambda m, n=name: f"{n}: {m}")


def stats(bn: nn.Module) -> list[torch.Tensor]:
    return [bn.running_mean, bn.running_var, bn.num_batches_tracked]


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize(("shape", "cls"), [((10, 4), nn.BatchNorm1d), ((10, 4, 5), nn.BatchNorm1d),
                                            ((10, 4, 3, 3), nn.BatchNorm2d), ((10, 4, 2, 2, 2), nn.BatchNorm3d)])
def test_running_stats_equal_one_full_batch_pass(shape: tuple[int, ...], cls: type, momentum: float | None) -> None:
    full = cls(4, momentum=momentum)
    deferred = convert_deferred_batch_norm(cls(4, momentum=momentum), chunks=3)
    assert isinstance(deferred, DeferredBatchNorm)
    for step in range(3):
        x = torch.randn(*shape) * (step + 1) + step
        full(x)
        for xi in torch.tensor_split(x, 3):  # 4, 3, 3 samples: uneven
            deferred(xi)
        for a, b in zip(stats(full), stats(deferred)):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert int(deferred.num_batches_tracked) == 3


def test_training_output_is_each_micro_batch_normalised_by_itself() -> None:
    plain = nn.BatchNorm1d(4)
    deferred = convert_deferred_batch_norm(copy.deepcopy(plain), chunks=2)
    x = torch.randn(6, 4) * 3
    for xi in x.chunk(2):
        torch.testing.assert_close(deferred(xi), plain(xi))
    full = nn.BatchNorm1d(4)(x)
    assert not torch.allclose(torch.cat([deferred(xi) for xi in x.chunk(2)]), full, atol=1e-3)


@pytest.mark.parametrize("checkpoint", MODES)
@pytest.mark.parametrize(("K", "M"), [(1, 3), (2, 3), (3, 4), (2, 1)])
def test_pipe_first_norm_equals_full_batch_and_grads_equal_micro_batched(K: int, M: int, checkpoint: str) -> None:
    net, x_y = model(), data()
    full = copy.deepcopy(net)
    micro = convert_deferred_batch_norm(copy.deepcopy(net), M)
    with GPipe(net, partitions=K, chunks=M, checkpoint=checkpoint, deferred_batch_norm=True) as pipe:
        loss = pipe.step(*x_y, CE, seed=1)
    assert isinstance(pipe.stage_modules[0][0], DeferredBatchNorm)
    CE(full(x_y[0]), x_y[1]).backward()
    ref_loss = sequential_step(micro, *x_y, CE, balance=pipe.balance, chunks=M, seed=1)
    # the model's first BatchNorm sees raw inputs: its statistics are the full-batch model's
    for a, b in zip(stats(full[0]), stats(pipe.stage_modules[0][0])):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    # every BatchNorm counted one step, and all of them equal the micro-batched sequential model's
    for got, want in zip(net.modules(), micro.modules()):
        if isinstance(got, DeferredBatchNorm):
            assert int(got.num_batches_tracked) == 1
            torch.testing.assert_close(got.running_mean, want.running_mean, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(got.running_var, want.running_var, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=0)
    assert_grads_close(net, micro)
    if M > 1:  # per-micro-batch normalisation is a different model: its gradients are not the full batch's
        assert any(not torch.allclose(p.grad, q.grad, atol=1e-4) for p, q in zip(net.parameters(), full.parameters()))
    else:
        assert_grads_close(net, full)


def test_eval_after_a_step_equals_the_full_batch_model_on_the_first_norm() -> None:
    x, _ = data(n=12)
    full = nn.Sequential(nn.BatchNorm1d(8))
    deferred = convert_deferred_batch_norm(copy.deepcopy(full), 4)
    with GPipe(deferred, partitions=1, chunks=4, deferred_batch_norm=True) as pipe:
        pipe.step(x, x, nn.functional.mse_loss)
    full(x)
    full.eval()
    deferred.eval()
    torch.testing.assert_close(deferred(x), full(x), rtol=1e-5, atol=1e-6)


def test_plain_batch_norm_in_the_pipe_updates_once_per_micro_batch() -> None:
    """The pitfall, measured: without deferral the statistics move M times a step and drift from the full batch."""
    net, (x, y) = model(), data(n=16)
    full = copy.deepcopy(net)
    with GPipe(net, partitions=2, chunks=8, checkpoint="never") as pipe:
        pipe.step(x, y, CE)
    full(x)
    assert int(net[0].num_batches_tracked) == 8
    assert (net[0].running_mean - full[0].running_mean).abs().max() > 0.05


def test_conversion_keeps_parameters_buffers_and_state_dict() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.BatchNorm1d(4), nn.ReLU()), nn.BatchNorm2d(2))
    net[1][0].running_mean.fill_(0.5)
    weight, keys = net[1][0].weight, set(net.state_dict())
    out = convert_deferred_batch_norm(net, 4)
    assert out is net and isinstance(net[1][0], DeferredBatchNorm) and isinstance(net[2], DeferredBatchNorm)
    assert net[1][0].weight is weight and bool((net[1][0].running_mean == 0.5).all())
    assert set(net.state_dict()) == keys
    assert convert_deferred_batch_norm(net, 2)[2].chunks == 2  # already deferred: only M changes
    untracked = nn.BatchNorm1d(4, track_running_stats=False)
    assert convert_deferred_batch_norm(untracked, 2) is untracked


def test_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        convert_deferred_batch_norm(nn.BatchNorm1d(3), 0)
    with pytest.raises(ValueError, match="expected a 4D input"):
        convert_deferred_batch_norm(nn.BatchNorm2d(3), 2)(torch.randn(4, 3))


def test_a_recomputed_forward_is_not_counted() -> None:
    """The layer itself skips a replayed forward (the engine's buffer copies are the second guard)."""
    from gpipe_core.engine.checkpoint import recomputing

    deferred = convert_deferred_batch_norm(nn.BatchNorm1d(4), chunks=2)
    x = torch.randn(6, 4)
    deferred(x[:3])
    with recomputing():
        replay = deferred(x[:3])
    deferred(x[3:])
    full = nn.BatchNorm1d(4)
    full(x)
    torch.testing.assert_close(replay, nn.functional.batch_norm(x[:3], None, None, training=True))
    for a, b in zip(stats(full), stats(deferred)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)

"""``GPipe(schedule="dualpipe")``: DualPipe through the public wrapper, on both executors, exact.

The wrapper hands the step to :class:`~gpipe_core.engine.two_way.TwoWayPipe` (tests/test_dualpipe.py tests the runner
and the table); here: the public surface. Loss, gradients, buffers, dropout and uneven micro-batches equal the
micro-batched sequential model's; the trace and measured memory come back per device; the conditions on M and K
and the refusal of running statistics name their fix.
"""

from __future__ import annotations

import copy

import pytest
import torch
from helpers.counters import Counter
from helpers.engine import assert_grads_close, batch, small_model
from torch import nn

from gpipe_core import GPipe, sequential_step
from gpipe_core.schedules.schedule import v_placement
from gpipe_core.schedules.validation import resolve
from gpipe_core.schedules.zoo import BUILTINS, TWO_WAY, lookup

CE = nn.functional.cross_entropy


@pytest.mark.parametrize("executor", ["inline", "threads"])
@pytest.mark.parametrize(("K", "M", "checkpoint", "dropout", "n"), [
    (2, 4, "always", 0.3, 11), (2, 6, "never", 0.0, 13), (4, 8, "except_last", 0.2, 19)])
def test_gpipe_runs_dualpipe_equal_to_the_sequential_model(K: int, M: int, checkpoint: str, dropout: float, n: int,
                                                            executor: str) -> None:
    model = small_model(layers=8, dropout=dropout)
    reference = copy.deepcopy(model)
    x, y = batch(n=n)  # n not a multiple of M: micro-batches of unequal size in both directions
    with GPipe(model, partitions=K, chunks=M, schedule="DualPipe", checkpoint=checkpoint, executor=executor) as pipe:
        loss = pipe.step(x, y, CE, seed=7, measure_memory=True)
    expected = sequential_step(reference, x, y, CE, balance=pipe.balance, chunks=M, seed=7)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    assert_grads_close(model, reference)
    assert (pipe.K, pipe.S, pipe.placement) == (K, K, v_placement(K))  # K pieces of the model, 2K copies placed
    assert list(pipe.parameters()) == list(model.parameters())  # the copies are not the model's parameters
    events = pipe.trace.events
    assert {pipe.trace.row(e.stage) for e in events} == set(range(K))  # every device drew its actions
    assert {e.kind for e in events} >= {"F", "B", "I", "W"}
    assert sorted(e.microbatch for e in events if e.kind == "F") == sorted(list(range(M)) * K)  # the batch's numbers
    assert pipe.memory is not None and len(pipe.memory) == K and min(pipe.memory) > 0


def test_two_steps_accumulate_sum_losses_and_one_sample_micro_batches() -> None:
    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return CE(out, target, reduction="sum")

    model = small_model(layers=4)
    reference = copy.deepcopy(model)
    pipe = GPipe(model, partitions=2, chunks=4, schedule="dualpipe", executor="threads", timeout=60)
    for step in range(2):  # no zero_grad between: .grad holds both steps' gradients
        x, y = batch(n=4, seed=step)  # four micro-batches of one sample
        loss = pipe.step(x, y, loss_fn, reduction="sum")
        expected = loss_fn(reference(x), y)
        expected.backward()
        torch.testing.assert_close(loss, expected.detach(), rtol=1e-5, atol=1e-6)
    assert_grads_close(model, reference)


@pytest.mark.parametrize("executor", ["inline", "threads"])
def test_module_state_equals_the_sequential_models(executor: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Counter(), nn.Dropout(0.2), Counter(), Counter(), nn.Linear(12, 4))
    reference = copy.deepcopy(model)
    x, y = batch(n=10)
    with GPipe(model, balance=[2, 3], chunks=4, schedule="dualpipe", checkpoint="always", executor=executor) as pipe:
        for step in range(2):
            pipe.step(x, y, CE, seed=step)
            sequential_step(reference, x, y, CE, balance=pipe.balance, chunks=4, seed=step)
    for (name, got), want in zip(model.named_buffers(), reference.buffers()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    assert int(model[0].calls) == 8  # once per micro-batch per step, whichever direction ran it


@pytest.mark.parametrize("layer", [nn.BatchNorm1d(12), nn.InstanceNorm1d(12, track_running_stats=True)])
def test_running_statistics_are_refused_not_silently_different(layer: nn.Module) -> None:
    model = nn.Sequential(nn.Linear(12, 12), layer, nn.Linear(12, 4))
    with pytest.raises(ValueError, match=r"layer '1' \(\w+Norm1d\) keeps running statistics.*use another schedule"):
        GPipe(model, partitions=2, chunks=4, schedule="dualpipe")
    with pytest.raises(ValueError, match="leave virtual, placement and deferred_batch_norm out"):
        GPipe(model, partitions=2, chunks=4, schedule="dualpipe", deferred_batch_norm=True)
    unaffected = nn.Sequential(nn.Linear(12, 12), nn.BatchNorm1d(12, track_running_stats=False), nn.Linear(12, 4))
    GPipe(unaffected, partitions=2, chunks=4, schedule="dualpipe").close()  # batch statistics only: nothing kept


@pytest.mark.parametrize(("K", "M", "message"), [
    (3, 6, r"even number of devices K \(got K=3\): use K=4"),
    (4, 6, r"M even and M >= 2K.*\(got M=6, K=4\): use M=8"),
    (2, 5, r"\(got M=5, K=2\): use M=6"),
])
def test_the_conditions_on_m_and_k_are_named(K: int, M: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GPipe(small_model(layers=12), partitions=K, chunks=M, schedule="dualpipe")


def test_inference_is_the_sequential_forward() -> None:
    model = small_model(layers=8, dropout=0.3).eval()
    x, _ = batch(n=9)
    with GPipe(model, partitions=2, chunks=4, schedule="dualpipe") as pipe:
        torch.testing.assert_close(pipe(x), model(x), rtol=1e-5, atol=1e-6)


def test_the_one_way_registry_points_to_gpipe() -> None:
    assert set(TWO_WAY).isdisjoint(BUILTINS)  # one route 0..S-1 per micro-batch in BUILTINS; DualPipe cuts it
    assert lookup("DualPipe") is TWO_WAY["dualpipe"] and TWO_WAY["dualpipe"].two_way  # one lookup finds both
    for ask in (lambda: resolve("dualpipe", 4, 2), lambda: resolve(TWO_WAY["dualpipe"], 4, 2)):
        with pytest.raises(ValueError, match=r"two directions: GPipe\(schedule='dualpipe'\) runs it"):
            ask()


def test_the_torch_export_says_why_it_cannot_take_dualpipe() -> None:
    from gpipe_core.distributed.export import TablePipe

    with pytest.raises(ValueError, match=r"PipelineStage always sends to stage s\+1.*export 'dualpipev'"):
        TablePipe(small_model(layers=4), chunks=4, schedule="dualpipe")

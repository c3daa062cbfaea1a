"""Recomputation keeps only the input and the RNG state and replays identical dropout masks."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers.engine import assert_grads_close, batch, small_model
from torch import nn

from gpipe_core import GPipe
from gpipe_core.engine.checkpoint import Recompute, StoreActivations, policy_for
from gpipe_core.engine.rng import StageRandom


def _run_with(policy, model: nn.Module, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = StageRandom(model, torch.device("cpu"))
    rng.generator.manual_seed(seed)
    with rng.active():
        out, saved = policy.forward(model, x, rng)
        grad = policy.backward(model, saved, torch.ones_like(out), rng)
    rng.remove()
    return out, grad


def test_recompute_replays_dropout_masks_exactly() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 8), nn.Dropout(0.5))
    ref = copy.deepcopy(model)
    x = torch.randn(6, 8, requires_grad=True)  # a stage input whose gradient upstream needs
    out_r, grad_r = _run_with(Recompute(), model, x, seed=3)
    out_s, grad_s = _run_with(StoreActivations(), ref, x, seed=3)
    assert torch.equal(out_r, out_s)
    assert grad_r is not None and torch.equal(grad_r, grad_s)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p.grad, q.grad)


class ForgetsRng(Recompute):
    """A wrong recomputation: it does not restore the RNG state."""

    def backward(self, run, saved, grad_output, rng):  # noqa: ANN001, ANN201
        x, _ = saved
        return super().backward(run, (x, rng.get_state()), grad_output, rng)


def test_forgetting_the_rng_state_changes_gradients() -> None:
    model = small_model(dropout=0.5)
    ref = copy.deepcopy(model)
    x, y = batch()
    GPipe(model, partitions=2, chunks=2, checkpoint=ForgetsRng()).step(x, y, nn.functional.cross_entropy, seed=1)
    GPipe(ref, partitions=2, chunks=2, checkpoint="never").step(x, y, nn.functional.cross_entropy, seed=1)
    with pytest.raises(AssertionError):
        assert_grads_close(model, ref)


def test_custom_policy_plugs_into_the_engine() -> None:
    model = small_model(dropout=0.3)
    ref = copy.deepcopy(model)
    x, y = batch()
    GPipe(model, partitions=3, chunks=4, checkpoint=Recompute()).step(x, y, nn.functional.cross_entropy, seed=2)
    GPipe(ref, partitions=3, chunks=4, checkpoint="never").step(x, y, nn.functional.cross_entropy, seed=2)
    assert_grads_close(model, ref)


def test_recompute_shows_in_the_trace() -> None:
    pipe = GPipe(small_model(), partitions=2, chunks=4, checkpoint="except_last")
    pipe.step(*batch(), nn.functional.cross_entropy)
    kinds = {(e.stage, e.microbatch): set() for e in pipe.trace.events}
    for e in pipe.trace.events:
        kinds[e.stage, e.microbatch].add(e.kind)
    assert all(kinds[j, i] == {"F", "R", "B"} for j in range(2) for i in range(3))
    assert all(kinds[j, 3] == {"F", "B"} for j in range(2))


def test_policy_names() -> None:
    assert isinstance(policy_for("always", 3, 4), Recompute)
    assert isinstance(policy_for("except_last", 3, 4), StoreActivations)
    assert isinstance(policy_for("except_last", 2, 4), Recompute)
    assert isinstance(policy_for("never", 0, 4), StoreActivations)
    with pytest.raises(ValueError, match=r"unknown checkpoint 'sometimes'"):
        policy_for("sometimes", 0, 1)


def test_dropout_hooks_do_not_touch_the_plain_model() -> None:
    """Outside a pipe step the model's dropout draws from the global generator as usual."""
    model = small_model(dropout=0.5)
    GPipe(model, partitions=2, chunks=2)
    x, _ = batch()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(0)
    b = model(x)
    assert torch.equal(a, b)


def test_policies_never_accumulate_into_the_callers_tensor() -> None:
    """Two backward passes on the same input each return that pass's gradient alone."""
    layer = nn.Sequential(nn.Linear(4, 4))
    x = torch.randn(3, 4, requires_grad=True)
    for policy in (StoreActivations(), Recompute()):
        grads = [_run_with(policy, layer, x, seed=0)[1] for _ in range(2)]
        assert torch.equal(grads[0], grads[1])
        assert x.grad is None

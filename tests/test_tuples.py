"""Several tensors between stages: integer ids, a skip connection carried past a stage, a constant mask.

Every layer of the ``nn.Sequential`` gets what the previous one returned, a
tensor or a tuple. The pipe must give the same loss and gradients as the
micro-batched sequential model, which shows that the gradient of the skip
connection comes back across the stages it skipped, while the integer ids and
the float mask without ``requires_grad`` pass through without one.
"""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from helpers.engine import assert_grads_close
from torch import nn

from gpipe_core import GPipe, sequential_step

CE = nn.functional.cross_entropy
H, V, C = 8, 11, 3


class Embed(nn.Module):
    """(features, ids) -> (h, ids, skip, mask): h mixes both, skip is a float tensor to carry along."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.emb = nn.Linear(H, H), nn.Embedding(V, H)

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        x, ids = inputs
        assert not ids.dtype.is_floating_point
        h = self.fc(x) + self.emb(ids)
        mask = (ids % 2).float()[:, None]  # computed from integers: a float with no gradient
        return torch.tanh(h), ids, h, mask


class Mix(nn.Module):
    """(h, ids, skip, mask) -> the same, with h transformed; skip and mask passed through untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(H, H)

    def forward(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        h, ids, skip, mask = inputs
        return torch.tanh(self.fc(h)) * (1 + mask), ids, skip, mask


class Join(nn.Module):
    """(h, ids, skip, mask) -> logits: the skip connection rejoins here, stages after it was made."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.skip = nn.Linear(H, C), nn.Linear(H, C)

    def forward(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        h, ids, skip, mask = inputs
        return self.fc(h) + self.skip(skip) * (1 - mask)


def tuple_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(Embed(), Mix(), nn.Sequential(Mix(), Mix()), Mix(), Join())


def batch(n: int = 10) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return (torch.randn(n, H, generator=g), torch.randint(0, V, (n,), generator=g)), \
        torch.randint(0, C, (n,), generator=g)


@pytest.mark.parametrize(("K", "M", "checkpoint", "schedule"),
                         list(itertools.product([1, 2, 3, 5], [1, 3, 4], ["always", "except_last", "never"],
                                                ["gpipe", "1f1b"])))
def test_tuples_match_the_sequential_model(K: int, M: int, checkpoint: str, schedule: str) -> None:
    model = tuple_model()
    ref = copy.deepcopy(model)
    x, y = batch()
    with GPipe(model, partitions=K, chunks=M, checkpoint=checkpoint, schedule=schedule) as pipe:
        loss = pipe.step(x, y, CE, seed=0)
    ref_loss = sequential_step(ref, x, y, CE, balance=pipe.balance, chunks=M, seed=0)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=0)
    assert_grads_close(model, ref)
    # the skip path really carries gradient back to the first stage: without it Embed's grads would differ
    assert model[4].skip.weight.grad.abs().sum() > 0 and model[0].fc.weight.grad.abs().sum() > 0


def test_the_skip_gradient_is_not_lost() -> None:
    """Guard for the test above: cutting the skip's gradient changes the first layer's gradient."""
    model = tuple_model()
    x, y = batch()
    with GPipe(model, partitions=3, chunks=2) as pipe:
        pipe.step(x, y, CE, seed=0)
    ref = tuple_model()
    original = ref[4].forward
    ref[4].forward = lambda t: original((t[0], t[1], t[2].detach(), t[3]))
    sequential_step(ref, x, y, CE, balance=pipe.balance, chunks=2, seed=0)
    assert not torch.allclose(model[0].fc.weight.grad, ref[0].fc.weight.grad)


def test_inference_returns_the_tuple_or_tensor_joined() -> None:
    model = tuple_model()
    x, _ = batch()
    with torch.no_grad():
        want = model(x)
    with GPipe(model, partitions=2, chunks=3) as pipe:
        got = pipe(x)
    torch.testing.assert_close(got, want)
    head = nn.Sequential(*list(tuple_model())[:2])
    with GPipe(head, partitions=2, chunks=3) as pipe:
        out = pipe(x)
    assert isinstance(out, tuple) and len(out) == 4 and torch.equal(out[1], x[1])


@pytest.mark.parametrize(("bad", "error", "words"), [
    ((torch.randn(10, H), torch.randint(0, V, (9,))), ValueError, "same samples"),
    ((torch.randn(10, H), torch.tensor(3)), TypeError, "batch dimension"),
    ((torch.randn(10, H), [1, 2, 3]), TypeError, "tuple of"),
    ((torch.randn(2, H), torch.randint(0, V, (2,))), ValueError, "micro-batches cannot split"),
])
def test_what_cannot_be_split_is_named(bad: tuple, error: type, words: str) -> None:
    with GPipe(tuple_model(), partitions=2, chunks=4) as pipe, pytest.raises(error, match=words):
        pipe.step(bad, torch.zeros(bad[0].shape[0], dtype=torch.long), CE)

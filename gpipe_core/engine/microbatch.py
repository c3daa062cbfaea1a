"""Split a batch into M micro-batches and join the outputs back.

GPipe's first move: the pipeline only overlaps stages if there are several
micro-batches in flight. The split must be exact (every sample once, in order),
work for a batch that M does not divide, and tell each micro-batch's share of
the batch so that per-micro-batch mean losses add up to the full-batch mean.
A batch may be a tuple of tensors (features and a mask, token ids): each is
split the same way, so micro-batch i holds the same samples of every one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import tensors
from .common import positive_int


def check_chunks(batch_size: int, chunks: int) -> int:
    """Raise a clear error when M cannot split a batch of ``batch_size``."""
    chunks = positive_int(chunks, "chunks (M)")
    if chunks > batch_size:
        raise ValueError(
            f"M={chunks} micro-batches cannot split a batch of {batch_size} samples: "
            f"use chunks <= {batch_size} or a larger batch"
        )
    return chunks


def split(batch: Any, chunks: int) -> list[Any]:
    """Split ``batch`` (a tensor or a tuple of tensors) along dimension 0 into exactly ``chunks`` micro-batches.

    Sizes differ by at most one (the first ones are larger), e.g. 10 samples
    in 4 chunks gives 3, 3, 2, 2.
    """
    items = tensors.as_tuple(batch)
    if not items or any(not isinstance(t, Tensor) or t.dim() == 0 for t in items):
        raise TypeError("split expects a tensor with a batch dimension (dim 0), or a tuple of such tensors")
    sizes = {t.shape[0] for t in items}
    if len(sizes) > 1:
        raise ValueError(
            f"the tensors of the batch have {sorted(sizes)} samples in dimension 0: every tensor of a tuple "
            "must hold the same samples so that micro-batch i takes the same rows of each"
        )
    chunks = check_chunks(items[0].shape[0], chunks)
    parts = [torch.tensor_split(t, chunks, dim=0) for t in items]
    return [tensors.like(batch, [p[i] for p in parts]) for i in range(chunks)]


def weights(chunks: list[Any]) -> list[float]:
    """Each micro-batch's share of the batch, n_i / N.

    Scaling micro-batch i's mean loss by n_i / N makes the M gradients sum to the
    gradient of the full-batch mean loss, also when the chunks are uneven.
    """
    sizes = [tensors.first(c).shape[0] for c in chunks]
    total = sum(sizes)
    return [n / total for n in sizes]


def loss_weights(chunks: list[Any], reduction: str) -> list[float]:
    """What each micro-batch's loss is multiplied by: n_i / N for a mean loss, 1 for a sum loss.

    A loss that sums over the batch (``reduction="sum"``) already adds up across
    micro-batches; scaling it by n_i / N would shrink the gradients by the batch share.
    """
    if reduction == "mean":
        return weights(chunks)
    if reduction == "sum":
        return [1.0] * len(chunks)
    raise ValueError(f"reduction must be 'mean' (the loss averages over the batch, PyTorch's default) or "
                     f"'sum' (it adds over the batch, e.g. reduction='sum' in the loss); got {reduction!r}")


def join(outputs: list[Any]) -> Any:
    """Concatenate micro-batch outputs (tensors or tuples of them) back into one batch, in order."""
    if not outputs:
        raise ValueError("join needs at least one micro-batch output")
    columns = zip(*(tensors.as_tuple(o) for o in outputs))
    return tensors.like(outputs[0], [torch.cat(list(c), dim=0) for c in columns])

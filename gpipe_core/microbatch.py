"""Split a batch into M micro-batches and join the outputs back.

GPipe's first move: the pipeline only overlaps stages if there are several
micro-batches in flight. The split must be exact (every sample once, in order),
work for a batch that M does not divide, and tell each micro-batch's share of
the batch so that per-micro-batch mean losses add up to the full-batch mean.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_chunks(batch_size: int, chunks: int) -> None:
    """Raise a clear error when M cannot split a batch of ``batch_size``."""
    if not isinstance(chunks, int) or chunks < 1:
        raise ValueError(f"chunks (M) must be a positive integer, got {chunks!r}")
    if chunks > batch_size:
        raise ValueError(
            f"M={chunks} micro-batches cannot split a batch of {batch_size} samples: "
            f"use chunks <= {batch_size} or a larger batch"
        )


def split(batch: Tensor, chunks: int) -> list[Tensor]:
    """Split ``batch`` along dimension 0 into exactly ``chunks`` micro-batches.

    Sizes differ by at most one (the first ones are larger), e.g. 10 samples
    in 4 chunks gives 3, 3, 2, 2.
    """
    if not isinstance(batch, Tensor) or batch.dim() == 0:
        raise TypeError("split expects a tensor with a batch dimension (dim 0)")
    check_chunks(batch.shape[0], chunks)
    return list(torch.tensor_split(batch, chunks, dim=0))


def weights(chunks: list[Tensor]) -> list[float]:
    """Each micro-batch's share of the batch, n_i / N.

    Scaling micro-batch i's mean loss by n_i / N makes the M gradients sum to the
    gradient of the full-batch mean loss, also when the chunks are uneven.
    """
    total = sum(c.shape[0] for c in chunks)
    return [c.shape[0] / total for c in chunks]


def join(outputs: list[Tensor]) -> Tensor:
    """Concatenate micro-batch outputs back into one batch, in order."""
    if not outputs:
        raise ValueError("join needs at least one micro-batch output")
    return torch.cat(outputs, dim=0)

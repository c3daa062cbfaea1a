"""Honest solutions of assignment 01, three learners, written from the notebook's recipe.

Test data for the review (see :mod:`autograder.selftest.honest`): each learner
has a style of their own (explicit loops; comprehensions and helpers;
recursion, library calls or another algorithm), and none of them copied
anyone, the engine included. Every source is one solution cell, keyed by
grade id.
"""

from __future__ import annotations

SOURCES: dict[str, dict[str, dict[str, str]]] = {
    "01_microbatching": {
        "ada": {
            "split_batch": '''\
def split_batch(batch: Tensor, M: int) -> list[Tensor]:
    n = len(batch)
    if M < 1 or M > n:
        raise ValueError(f"M={M} cannot split {n} samples: choose M from 1 to {n}")
    pieces = []
    start = 0
    for i in range(M):
        size = n // M
        if i < n % M:
            size = size + 1
        pieces.append(batch[start:start + size])
        start = start + size
    return pieces
''',
            "microbatch_weights": '''\
def microbatch_weights(chunks: list[Tensor]) -> list[float]:
    total = 0
    for chunk in chunks:
        total += chunk.shape[0]
    result = []
    for chunk in chunks:
        result.append(chunk.shape[0] / total)
    return result
''',
            "accumulate_gradients": '''\
def accumulate_gradients(model: nn.Module, x_chunks: list[Tensor], y_chunks: list[Tensor], loss_fn: LossFn) -> Tensor:
    total_samples = 0
    for xb in x_chunks:
        total_samples += xb.shape[0]
    full_loss = torch.tensor(0.0)
    for index in range(len(x_chunks)):
        xb = x_chunks[index]
        yb = y_chunks[index]
        share = xb.shape[0] / total_samples
        weighted = loss_fn(model(xb), yb) * share
        weighted.backward()
        full_loss += weighted.detach()
    return full_loss
''',
        },
        "ben": {
            "split_batch": '''\
from itertools import accumulate


def _chunk_sizes(count, parts):
    return [count // parts + (1 if k < count % parts else 0) for k in range(parts)]


def split_batch(batch: Tensor, M: int) -> list[Tensor]:
    count = batch.size(0)
    if not 1 <= M <= count:
        raise ValueError(f"need 1 <= M <= {count} for a batch of {count}, got M={M}")
    edges = [0, *accumulate(_chunk_sizes(count, M))]
    return [batch[lo:hi] for lo, hi in zip(edges, edges[1:])]
''',
            "microbatch_weights": '''\
def microbatch_weights(chunks: list[Tensor]) -> list[float]:
    counts = [len(c) for c in chunks]
    return [float(k) / sum(counts) for k in counts]
''',
            "accumulate_gradients": '''\
def accumulate_gradients(model: nn.Module, x_chunks: list[Tensor], y_chunks: list[Tensor], loss_fn: LossFn) -> Tensor:
    sizes = [len(x) for x in x_chunks]
    parts = []
    for x, y, n in zip(x_chunks, y_chunks, sizes):
        part = loss_fn(model(x), y) * n / sum(sizes)
        part.backward()
        parts.append(part.detach())
    return torch.stack(parts).sum()
''',
        },
        "chen": {
            "split_batch": '''\
import math


def split_batch(batch: Tensor, M: int) -> list[Tensor]:
    """Recursive: the first micro-batch takes the rounded-up share, the rest is split again."""
    samples = batch.shape[0]
    if M <= 0 or samples < M:
        raise ValueError(f"{samples} samples fit 1..{samples} micro-batches, not {M}")
    if M == 1:
        return [batch]
    head = math.ceil(samples / M)
    return [batch[:head]] + split_batch(batch[head:], M - 1)
''',
            "microbatch_weights": '''\
def microbatch_weights(chunks: list[Tensor]) -> list[float]:
    n = torch.tensor([c.shape[0] for c in chunks], dtype=torch.float64)
    return (n / n.sum()).tolist()
''',
            "accumulate_gradients": '''\
def accumulate_gradients(model: nn.Module, x_chunks: list[Tensor], y_chunks: list[Tensor], loss_fn: LossFn) -> Tensor:
    N = float(sum(c.shape[0] for c in x_chunks))
    running = 0.0
    for inputs, targets in zip(x_chunks, y_chunks):
        mean_loss = loss_fn(model(inputs), targets)
        scaled = mean_loss * (inputs.shape[0] / N)
        torch.autograd.backward(scaled)
        running = running + scaled.item()
    return torch.tensor(running)
''',
        },
    },
}

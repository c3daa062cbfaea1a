"""Deferred BatchNorm: micro-batches normalise themselves, the running statistics see the whole batch.

BatchNorm is the one common layer that mixes samples. In a pipeline it only
ever sees a micro-batch, so two things change against the full-batch model:

1. **the normalisation**: each micro-batch is normalised with its own mean and
   variance. This is inherent to micro-batching (the full batch does not exist
   on any stage at the time a micro-batch passes) and it is what the
   micro-batched sequential model computes too;
2. **the running statistics**: a plain BatchNorm updates them once per
   forward, so M times per step with M small-sample estimates, and its
   ``num_batches_tracked`` counts micro-batches, not steps.

The second one can be fixed, and this module does: :class:`DeferredBatchNorm`
normalises with the micro-batch's statistics but only *accumulates* them
(count, mean and sum of squared deviations, merged exactly, micro-batch by
micro-batch); after the step's M-th micro-batch it updates the running
statistics once, with the whole batch's mean and unbiased variance. In
evaluation mode the layer then behaves exactly like the full-batch model's.

A recomputation (re-materialisation in backward) must not count a
micro-batch twice: the layer asks :func:`gpipe_core.is_recomputing` and
accumulates nothing while the engine replays a forward (the engine also runs
recomputations on copies of the buffers, so this is belt and braces, and it
saves the work).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .checkpoint import is_recomputing
from .common import positive_int

_PLAIN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_INPUT_DIMS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}


class DeferredBatchNorm(_BatchNorm):
    """A BatchNorm that updates its running statistics once per ``chunks`` micro-batches.

    Built from an existing ``BatchNorm1d/2d/3d`` by :func:`convert_deferred_batch_norm`,
    sharing its parameters and running buffers (an optimizer that holds the old
    weight keeps working). Only training mode with ``track_running_stats``
    differs from the plain layer; evaluation is plain BatchNorm.
    """

    def __init__(self, plain: _BatchNorm, chunks: int) -> None:
        chunks = positive_int(chunks, "chunks (M)")
        super().__init__(plain.num_features, plain.eps, plain.momentum, affine=False,
                         track_running_stats=False)
        self.affine, self.track_running_stats = plain.affine, plain.track_running_stats
        self.weight, self.bias = plain.weight, plain.bias  # the same Parameter objects
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self._buffers[name] = getattr(plain, name)
        self.chunks = chunks
        self.input_dims = next(d for cls, d in _INPUT_DIMS.items() if isinstance(plain, cls))
        # what has been seen of this step so far (not in state_dict: it is mid-step scratch)
        dev, C = plain.running_mean.device, plain.num_features
        self.register_buffer("seen_chunks", torch.zeros((), dtype=torch.long, device=dev), persistent=False)
        self.register_buffer("seen_count", torch.zeros((), dtype=torch.float64, device=dev), persistent=False)
        self.register_buffer("seen_mean", torch.zeros(C, dtype=torch.float64, device=dev), persistent=False)
        self.register_buffer("seen_m2", torch.zeros(C, dtype=torch.float64, device=dev), persistent=False)

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() not in self.input_dims:
            raise ValueError(f"expected a {' or '.join(f'{d}D' for d in self.input_dims)} input to this "
                             f"BatchNorm, got {x.dim()}D of shape {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.track_running_stats):
            return super().forward(x)
        self._check_input_dim(x)
        out = F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        if not is_recomputing():
            self._accumulate(x.detach())
            if int(self.seen_chunks) == self.chunks:
                self._commit()
        return out

    def _accumulate(self, x: Tensor) -> None:
        """Merge this micro-batch's count, mean and squared deviations into the step's (Chan et al.)."""
        dims = [d for d in range(x.dim()) if d != 1]
        x64 = x.to(torch.float64)
        n = float(x.numel() // x.shape[1])
        mean = x64.mean(dims)
        m2 = ((x64 - mean.view(1, -1, *[1] * (x.dim() - 2))) ** 2).sum(dims)
        total = self.seen_count + n
        delta = mean - self.seen_mean
        self.seen_m2 += m2 + delta**2 * self.seen_count * n / total
        self.seen_mean += delta * n / total
        self.seen_count.copy_(total)
        self.seen_chunks += 1

    def _commit(self) -> None:
        """The full batch's update of the running statistics, once; then forget the step."""
        n = float(self.seen_count)
        self.num_batches_tracked += 1
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        var = self.seen_m2 / max(n - 1.0, 1.0)  # unbiased, as BatchNorm's running_var
        self.running_mean.mul_(1 - factor).add_(self.seen_mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(var.to(self.running_var.dtype), alpha=factor)
        for buf in (self.seen_chunks, self.seen_count, self.seen_mean, self.seen_m2):
            buf.zero_()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", chunks={self.chunks}"


def convert_deferred_batch_norm(module: nn.Module, chunks: int) -> nn.Module:
    """Replace every BatchNorm1d/2d/3d in ``module`` (in place) by a :class:`DeferredBatchNorm`.

    Parameters and running buffers are kept (the new layers share them), so
    the converted model continues where the original was. Returns ``module``,
    or the new layer when ``module`` itself is a BatchNorm. A layer that is
    already deferred gets the new ``chunks``.
    """
    if isinstance(module, DeferredBatchNorm):
        module.chunks = chunks
        return module
    if isinstance(module, _PLAIN):
        if not module.track_running_stats:
            return module  # nothing to defer: it always normalises with the batch it sees
        deferred = DeferredBatchNorm(module, chunks)
        deferred.train(module.training)
        return deferred
    for name, child in module.named_children():
        new = convert_deferred_batch_norm(child, chunks)
        if new is not child:
            setattr(module, name, new)
    return module

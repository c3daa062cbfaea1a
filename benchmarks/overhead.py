"""Metric 1: what the engine costs when there is nothing to pipeline.

``pipe.step`` with K=1, M=1 and no checkpointing does exactly the work of a
plain forward+backward, plus the engine's bookkeeping (a worker thread, the
schedule walk, the trace). The ratio of the two is that bookkeeping.
"""

from __future__ import annotations

import torch
from torch import nn

from gpipe_core import GPipe
from gpipe_core.course.experiments import plain_step
from gpipe_core.workloads.models import mlp

from .common import Row, interleaved, paired


def run(N: int = 256, H: int = 1024, L: int = 24, repeats: int = 15) -> list[Row]:
    torch.manual_seed(0)
    model = mlp(L, H)
    x, y = torch.randn(N, H), torch.randn(N, H)
    loss_fn = nn.functional.mse_loss
    pipe = GPipe(model, partitions=1, chunks=1, checkpoint="never", threads_per_stage=1)
    t = interleaved({"pipe": lambda: pipe.step(x, y, loss_fn, seed=0),
                     "plain": lambda: plain_step(model, x, y, loss_fn)}, repeats)
    model.zero_grad(set_to_none=True)
    return [Row.estimate("1 overhead", f"pipe.step K=1 M=1 never / plain fwd+bwd ({L}x{H}, N={N})",
                         paired(t["pipe"], t["plain"]), target="<= 1.03",
                         detail=f"{t['pipe'].median * 1e3:.1f} ms vs {t['plain'].median * 1e3:.1f} ms; median of "
                                f"{repeats} back-to-back pairs, spread = 95% interval of that median")]

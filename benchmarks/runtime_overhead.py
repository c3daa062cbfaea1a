"""Metric 4: the runtime's own cost per micro-batch and stage, with no compute.

Stages of one scalar multiply do (almost) no arithmetic; the same per-micro-batch
forward/backward calls written as a plain Python loop are the floor. What the
engine adds on top (threads, inboxes, the schedule walk, policies, trace) divided
by M*K is the per-micro-batch, per-stage overhead. The inline executor is the
runtime itself; the threaded one adds the cost of handing work between Python
threads (wake-ups and GIL hand-offs), which only pays off when stages compute.

Both sides are timed in CPU time of this process (all its threads), not wall
time: the overhead is work, and on a shared machine CPU time is what other
tenants disturb least. Blocked threads cost no CPU time, so waiting is not
hidden work; the thread hand-offs themselves are.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from gpipe_core import GPipe

from .common import Row, interleaved


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


def _plain_loop(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, M: int) -> None:
    """The same calls the engine makes, with no engine: per micro-batch, per stage."""
    for xi, yi in zip(torch.tensor_split(x, M), torch.tensor_split(y, M)):
        outs, h = [], xi
        for layer in model:
            h0 = h.detach().requires_grad_(bool(outs))
            h = layer(h0)
            outs.append((h0, h))
        loss = nn.functional.mse_loss(h, yi) / M
        grad = None
        for h0, h in reversed(outs):
            torch.autograd.backward(loss if grad is None else h, grad)
            grad = h0.grad
            loss = None


def run(Ks: tuple[int, ...] = (1, 2, 4), M: int = 256, repeats: int = 15) -> list[Row]:
    rows = []
    x, y = torch.randn(M, 1), torch.randn(M, 1)
    for executor in ("inline", "threads"):
        for K in Ks:
            model = nn.Sequential(*[Scale() for _ in range(K)])
            pipe = GPipe(model, partitions=K, chunks=M, checkpoint="never", threads_per_stage=1, executor=executor)
            t = interleaved({"engine": lambda p=pipe: p.step(x, y, nn.functional.mse_loss, seed=0),
                             "plain": lambda m=model: _plain_loop(m, x, y, M)}, repeats, clock=time.process_time)
            per = (t["engine"].median - t["plain"].median) / (M * K) * 1e6
            rows.append(Row("4 runtime", f"overhead per micro-batch per stage, {executor}, K={K}, M={M}", per,
                            unit="us", target="<= 10" if executor == "inline" else "",
                            spread=(t["engine"].spread + t["plain"].spread) / (M * K) * 1e6,
                            detail=f"engine {t['engine'].median * 1e3:.1f} ms, "
                                   f"plain loop {t['plain'].median * 1e3:.1f} ms"))
    return rows

"""Where a step on small stages spends its time, part by part, before anything is optimised.

On 64-wide layers with one-sample micro-batches a stage's action lasts a few
hundred microseconds, most of it torch's per-operation overhead, so the
engine's Python around each action is a visible share. This splits the CPU
time of an inline step into nested parts (each part's own time, its children
taken out): the layers' forward, the loss function, autograd's backward, the
stage's bookkeeping around them (checkpoint policy, fresh leaves, stamps, the
loss weight and the finite check), the runtime's walk and messages, and
``GPipe.step``'s split and gather. The same clock on a plain loop over the
same layers gives the reference. CPU time of the one thread, not wall time, so
another tenant's load stretches the parts less; the rows take the least
disturbed quarter of the steps.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import gpipe_core.engine.tensors as tensors
from gpipe_core import GPipe
from gpipe_core.workloads.models import mlp

from .common import Row
from .stage_clock import stages_of


class Parts:
    """Nested CPU timers: each wrapped call adds its own time (children excluded) to its part."""

    def __init__(self) -> None:
        self.spent: Counter[str] = Counter()
        self._stack: list[int] = []

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock, stack, spent = time.thread_time_ns, self._stack, self.spent

        def timed(*args: Any, **kw: Any) -> Any:
            stack.append(0)
            start = clock()
            try:
                return fn(*args, **kw)
            finally:
                took = clock() - start
                spent[part] += took - stack.pop()
                if stack:
                    stack[-1] += took

        return timed


def run(L: int = 24, H: int = 64, N: int = 32, M: int = 32, repeats: int = 40) -> list[Row]:
    torch.manual_seed(0)
    model = mlp(L, H)
    x, y = torch.randn(N, H), torch.randn(N, H)
    parts = Parts()
    layers = parts.wrap("layers' forward", model.forward)
    loss_fn = parts.wrap("loss function", nn.functional.mse_loss)

    def plain() -> None:
        for xi, yi in zip(torch.tensor_split(x, M), torch.tensor_split(y, M)):
            out = layers(xi)
            parts.wrap("autograd backward", torch.Tensor.backward)(loss_fn(out, yi) / M)

    pipe = GPipe(model, partitions=2, chunks=M, checkpoint="never", threads_per_stage=1, executor="inline")
    for stage in stages_of(pipe):
        stage.module.forward = parts.wrap("layers' forward", stage.module.forward)
        for name in ("forward", "backward"):
            setattr(stage, name, parts.wrap("stage bookkeeping (policy, leaves, stamps, loss weight, finite check)",
                                            getattr(stage, name)))
    runtime = pipe._runtime  # noqa: SLF001 - the benchmark times the engine's parts
    runtime.run = parts.wrap("runtime (walk, messages, step setup)", runtime.run)
    step = parts.wrap("GPipe.step (split, targets, gather)", pipe.step)
    engine_backward = tensors.backward
    tensors.backward = parts.wrap("autograd backward", engine_backward)
    try:
        steps: dict[str, list[tuple[int, Counter[str]]]] = {"plain": [], "ours": []}
        fns = {"plain": plain, "ours": lambda: step(x, y, loss_fn, seed=0)}
        for fn in fns.values():
            fn()
        for r in range(repeats):
            for name in (fns if r % 2 == 0 else reversed(fns)):
                parts.spent.clear()
                start = time.thread_time_ns()
                fns[name]()
                steps[name].append((time.thread_time_ns() - start, Counter(parts.spent)))
    finally:
        tensors.backward = engine_backward
        model.zero_grad(set_to_none=True)
    return _rows(steps, f"{L}x Linear({H},{H}), N={N}, M={M}, inline")


def _rows(steps: dict[str, list[tuple[int, Counter[str]]]], shape: str) -> list[Row]:
    quiet = {k: sorted(v, key=lambda s: s[0])[: max(1, len(v) // 4)] for k, v in steps.items()}
    total = {k: statistics.mean(s[0] for s in v) for k, v in quiet.items()}
    rows = [Row("4 runtime", f"small stages: step CPU / the plain loop's ({shape})", total["ours"] / total["plain"],
                detail=f"{total['ours'] / 1e6:.2f} ms against {total['plain'] / 1e6:.2f} ms of one thread's CPU; "
                       "means of the least disturbed quarter of the steps")]
    for name in ("ours", "plain"):
        spent = Counter()
        for _, c in quiet[name]:
            spent.update(c)
        for part, ns in spent.most_common():
            share = ns / len(quiet[name]) / total[name]
            rows.append(Row("4 runtime", f"small stages, {'ours' if name == 'ours' else 'plain loop'}: share of "
                                         f"step CPU in {part}", share * 100, unit="%",
                            detail=f"{ns / len(quiet[name]) / 1e6:.2f} ms per step ({shape})"))
    return rows

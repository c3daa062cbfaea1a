"""Metric 5: what re-materialisation buys (bytes) and costs (time).

Bytes are counted exactly (saved-tensor hooks) per stage and compared with the
memory law N + (L/K)(N/M) in this model's units and with storing everything.
Time: ``always`` recomputes one forward per micro-batch, so against ``never``
the ideal is about (F + F + B) / (F + B) = 4/3 when backward costs 2F.
"""

from __future__ import annotations

import torch
from torch import nn

from gpipe_core import GPipe
from gpipe_core.course.report import memory_law_bytes
from gpipe_core.workloads.models import mlp

from .common import Row, interleaved, ratio_spread


def memory(N: int = 256, H: int = 256, L: int = 24) -> tuple[list[Row], list[dict]]:
    torch.manual_seed(0)
    x, y = torch.randn(N, H), torch.randn(N, H)
    table, worst = [], 0.0
    for K in (1, 2, 4):
        for M in (1, 4, 16):
            entry = {"K": K, "M": M}
            for mode in ("always", "never"):
                pipe = GPipe(mlp(L, H), partitions=K, chunks=M, checkpoint=mode)
                pipe.step(x, y, lambda out, t: out.pow(2).mean(), measure_memory=True)
                entry[mode] = max(pipe.memory)
                entry[f"law_{mode}"] = max(memory_law_bytes(pipe, x))
                worst = max(worst, abs(entry[mode] / entry[f"law_{mode}"] - 1))
            table.append(entry)
    rows = [Row("5 checkpoint", f"K={e['K']:>1} M={e['M']:>2}: bytes held always / never (per stage, max)",
                e["always"] / e["never"],
                detail=f"always {e['always'] / 2**20:.2f} MiB (law {e['law_always'] / 2**20:.2f}), "
                       f"never {e['never'] / 2**20:.2f} MiB (law {e['law_never'] / 2**20:.2f})")
            for e in table]
    rows.append(Row("5 checkpoint", "largest |measured / law - 1| over K, M and both modes", worst, unit="",
                    target="<= 0.05"))
    return rows, table


def time_ratio(N: int = 512, H: int = 1024, L: int = 24, repeats: int = 5) -> list[Row]:
    torch.manual_seed(0)
    model = mlp(L, H)
    x, y = torch.randn(N, H), torch.randn(N, H)
    loss_fn = nn.functional.mse_loss
    rows = []
    for K, M in ((1, 4), (2, 8)):
        pipes = {mode: GPipe(model, partitions=K, chunks=M, checkpoint=mode, threads_per_stage=1)
                 for mode in ("always", "except_last", "never")}
        t = interleaved({m: (lambda p=p: p.step(x, y, loss_fn, seed=0)) for m, p in pipes.items()}, repeats)
        for mode in ("always", "except_last"):
            rows.append(Row("5 checkpoint", f"K={K} M={M}: step time {mode} / never",
                            t[mode].median / t["never"].median,
                            target="<= 1.36" if mode == "always" and K == 1 else "",
                            spread=ratio_spread(t[mode], t["never"]),
                            detail=f"{t[mode].median:.3f} s vs {t['never'].median:.3f} s"))
        model.zero_grad(set_to_none=True)
    return rows

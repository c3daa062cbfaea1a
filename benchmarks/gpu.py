"""The GPU checks, in one process: equivalence on CUDA, streams vs sequential, allocator memory.

Run through ``benchmarks/gpu.sh`` on a machine with one GPU (about 2-3 minutes).
Stages share the GPU, each on its own CUDA stream, exactly as on a Colab GPU.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

from gpipe_core import GPipe, sequential_step
from gpipe_core.engine.memory import cuda_peak_bytes
from gpipe_core.sim.theory import bubble_fraction, memory_units_rematerialized
from gpipe_core.workloads.models import mlp

from .common import Row, interleaved, print_table, ratio_spread

DEV = torch.device("cuda:0")


def schedules() -> dict[str, int]:
    """Every built-in schedule and its virtual stages per device (V)."""
    try:
        from gpipe_core.schedules.zoo import BUILTINS
    except ImportError:  # an engine from before the zoo
        return {"gpipe": 1, "1f1b": 1}
    return {name: b.virtual for name, b in BUILTINS.items()}


def equivalence(device: torch.device = DEV, Ks: tuple[int, ...] = (1, 2, 4)) -> list[Row]:
    """Loss and gradients on ``device`` equal the sequential model's, dropout included, for every built-in table.

    Stages share the device, each on its own stream. A failing case is
    counted and named, never allowed to stop the rest of the checks.
    """
    worst, cases, failed = 0.0, 0, []
    for K, M, mode, (sched, V) in itertools.product(Ks, [1, 3, 8], ["always", "except_last", "never"],
                                                    schedules().items()):
        torch.manual_seed(0)
        model = mlp(8, 64, classes=5, dropout=0.3).to(device)  # 9 blocks: room for K*V = 8 stages
        ref = copy.deepcopy(model)
        x, y = torch.randn(30, 64, device=device), torch.randint(0, 5, (30,), device=device)
        case = f"{sched} K={K} M={M} {mode}"
        try:
            pipe = GPipe(model, partitions=K, virtual=V, chunks=M, checkpoint=mode, schedule=sched, devices=device)
            loss = pipe.step(x, y, nn.functional.cross_entropy, seed=11)
            ref_loss = sequential_step(ref, x, y, nn.functional.cross_entropy, balance=pipe.balance, chunks=M,
                                       seed=11)
            torch.testing.assert_close(loss.cpu(), ref_loss.cpu(), rtol=1e-5, atol=1e-6)
            for p, q in zip(model.parameters(), ref.parameters()):
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)
                worst = max(worst, ((p.grad - q.grad).abs().max() / q.grad.abs().max().clamp_min(1e-12)).item())
        except Exception as exc:  # noqa: BLE001 - every case is reported, the first lines of each failure kept
            failed.append(f"{case}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        cases += 1
    where = "CUDA" if device.type == "cuda" else str(device)
    return [Row("gpu", f"largest relative gradient difference over {cases - len(failed)} {where} cases (dropout on)",
                worst, unit="", target="<= 1e-05"),
            Row("gpu", f"{where} cases whose loss or gradients differ from the sequential model, of {cases}",
                len(failed), unit="", target="<= 0", detail="; ".join(failed[:5]))]


def streams(N: int = 4096, H: int = 4096, L: int = 32, repeats: int = 5) -> list[Row]:
    """K=4 stages sharing one GPU on four streams vs the same model run sequentially on it."""
    torch.manual_seed(0)
    model = mlp(L, H).to(DEV)
    x, y = torch.randn(N, H, device=DEV), torch.randn(N, H, device=DEV)
    loss_fn = nn.functional.mse_loss
    rows = []

    def synced(fn):  # noqa: ANN001, ANN202
        def run() -> None:
            fn()
            torch.cuda.synchronize(DEV)
        return run

    def plain() -> None:
        loss_fn(model(x), y).backward()

    for M in (4, 16):
        pipe = GPipe(model, partitions=4, chunks=M, checkpoint="never", devices=[DEV] * 4)
        seq = GPipe(model, partitions=1, chunks=M, checkpoint="never", devices=[DEV])
        t = interleaved({"pipe": synced(lambda p=pipe: p.step(x, y, loss_fn, seed=0)),
                         "seq": synced(lambda p=seq: p.step(x, y, loss_fn, seed=0)),
                         "plain": synced(plain)}, repeats)
        rows.append(Row("gpu", f"K=4 on one GPU (4 streams) vs K=1 same micro-batches, M={M}",
                        t["seq"].median / t["pipe"].median, spread=ratio_spread(t["seq"], t["pipe"]),
                        detail=f"pipe {t['pipe'].median * 1e3:.1f} ms, one stage {t['seq'].median * 1e3:.1f} ms, "
                               f"plain full batch {t['plain'].median * 1e3:.1f} ms; bubble measured "
                               f"{pipe.trace.bubble():.3f} (theory for 4 devices {bubble_fraction(M, 4):.3f})"))
        model.zero_grad(set_to_none=True)
    return rows


def memory(N: int = 2048, H: int = 2048, L: int = 24) -> list[Row]:
    """Allocator peak of a checkpointed step against the memory law (one stage, K=1)."""
    rows = []
    for M in (1, 4, 16):
        torch.manual_seed(0)
        model = mlp(L, H).to(DEV)
        x, y = torch.randn(N, H, device=DEV), torch.randn(N, H, device=DEV)
        peaks = {}
        for mode in ("always", "never"):
            pipe = GPipe(model, partitions=1, chunks=M, checkpoint=mode, devices=[DEV])
            pipe.step(x, y, lambda o, t: o.pow(2).mean(), seed=0)  # warm the allocator
            model.zero_grad(set_to_none=False)
            torch.cuda.synchronize(DEV)
            torch.cuda.reset_peak_memory_stats(DEV)
            base = torch.cuda.memory_allocated(DEV)
            pipe.step(x, y, lambda o, t: o.pow(2).mean(), seed=0)
            torch.cuda.synchronize(DEV)
            peaks[mode] = cuda_peak_bytes(DEV) - base
        unit = H * 4  # one sample's activation at one layer, float32
        law = memory_units_rematerialized(N, L, M, 1) * unit
        rows.append(Row("gpu", f"allocator peak, always, M={M}: measured / law N+L*N/M", peaks["always"] / law,
                        detail=f"always {peaks['always'] / 2**20:.0f} MiB, never {peaks['never'] / 2**20:.0f} MiB, "
                               f"law {law / 2**20:.0f} MiB (peak includes backward's temporaries)"))
    return rows


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: run this on a GPU machine", file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name(DEV)}, torch {torch.__version__}", flush=True)
    rows = equivalence()
    print_table(rows)
    rows += streams()
    rows += memory()
    print_table(rows)
    out = Path(os.environ.get("OUT", Path(__file__).parent / "results"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps({"device": torch.cuda.get_device_name(DEV),
                                              "rows": [r.as_json() for r in rows]}, indent=1))
    return 0 if all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

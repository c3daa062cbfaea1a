"""Metric 3: against the peer a user would pick on one machine.

PyTorch's own ``torch.distributed.pipelining`` with ``ScheduleGPipe``: one
process per stage, gloo between them, the same stages (cut by the same
balance from the same seeded model), the same M and one intra-op thread per
stage. Both sides run the same number of steps; we compare wall time per step
and check that both leave the same gradients.

The peer's own speed is no target, since it may be far from what the hardware
allows. The target is against a perfect engine: the same micro-batches in a
plain loop on one thread, divided by the ideal overlap K*M/(M+K-1). Its step
time over ours (timed in alternating turns) says how much of the achievable
speed we reach; the peer ratio and the peer's distance from that bound are
reported beside it.
"""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from gpipe_core import GPipe
from gpipe_core.models import mlp
from gpipe_core.partition import balance_by_count, split_module
from gpipe_core.theory import ideal_speedup

from .common import Row, attainable_speedup, interleaved
from .efficiency import hardware_scaling


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data(N: int, H: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(N, H, generator=g), torch.randn(N, H, generator=g)


def _peer_worker(rank: int, K: int, L: int, H: int, N: int, M: int, steps: int, port: int, out: str) -> None:
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=K)
    try:
        torch.manual_seed(0)
        part = split_module(mlp(L, H), balance_by_count(L, K))[rank]
        x, y = _data(N, H)
        stage = PipelineStage(part, rank, K, torch.device("cpu"))
        schedule = ScheduleGPipe(stage, n_microbatches=M, loss_fn=nn.functional.mse_loss)

        def step() -> None:
            if rank == 0:
                schedule.step(x)
            elif rank == K - 1:
                schedule.step(target=y)
            else:
                schedule.step()

        part.zero_grad()
        step()  # warm-up, and the gradients we compare
        torch.save([p.grad for p in part.parameters()], f"{out}/grads{rank}.pt")
        times = []
        for _ in range(steps):
            dist.barrier()
            start = time.perf_counter()
            step()
            dist.barrier()
            times.append(time.perf_counter() - start)
        if rank == 0:
            torch.save(times, f"{out}/times.pt")
    finally:
        dist.destroy_process_group()


def peer_times(K: int, L: int, H: int, N: int, M: int, steps: int) -> tuple[list[float], list[torch.Tensor]]:
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(_peer_worker, args=(K, L, H, N, M, steps, _free_port(), out), nprocs=K,
                           start_method="spawn", join=True)
        grads = [g for r in range(K) for g in torch.load(Path(out) / f"grads{r}.pt")]
        return torch.load(Path(out) / "times.pt"), grads


def case(name: str, L: int, H: int, N: int, M: int, steps: int,
         executors: tuple[str, ...] = ("threads",)) -> list[Row]:
    """Rows for one model size: ours against a perfect engine (the target), against the peer, and the bound."""
    K = 2
    times, peer_grads = peer_times(K, L, H, N, M, steps)
    theirs = statistics.median(times)
    shape = f"{L}x Linear({H},{H}), N={N}, M={M}"
    rows: list[Row] = []
    ours: dict[str, Row] = {}
    for executor in executors:
        torch.manual_seed(0)
        model = mlp(L, H)
        x, y = _data(N, H)
        pipe = GPipe(model, partitions=K, chunks=M, checkpoint="never", threads_per_stage=1, executor=executor)
        model.zero_grad()
        pipe.step(x, y, nn.functional.mse_loss)
        diff = max((a - b).abs().max().item() / b.abs().max().clamp_min(1e-12).item()
                   for a, b in zip([p.grad for p in model.parameters()], peer_grads))

        def plain(model: nn.Sequential = model, x: torch.Tensor = x, y: torch.Tensor = y) -> None:
            """The floor: the same micro-batches through the same layers in a plain loop, one thread, no overlap."""
            for xi, yi in zip(torch.tensor_split(x, M), torch.tensor_split(y, M)):
                (nn.functional.mse_loss(model(xi), yi) / M).backward()

        t = interleaved({"ours": lambda p=pipe, x=x, y=y: p.step(x, y, nn.functional.mse_loss, seed=0),
                         "plain": plain}, steps)
        perfect = [p / ideal_speedup(M, K) for p in t["plain"].runs]  # a perfect engine overlaps ideally
        caveat = " (it cannot overlap CPU stages: at most 1/ideal)" if executor == "inline" else ""
        ours[executor] = Row.estimate(
            "3 peer", f"{name}: a perfect engine's step / ours ({executor})",
            [f / o for f, o in zip(perfect, t["ours"].runs)],
            target=">= 0.95" if executor == "threads" else "",
            detail=f"{shape}: the plain loop over the ideal overlap K*M/(M+K-1) = {ideal_speedup(M, K):.2f}, "
                   f"{statistics.median(perfect) * 1e3:.2f} ms, against ours {t['ours'].median * 1e3:.2f} ms; "
                   f"paired repeats{caveat}")
        rows.append(ours[executor])
        rows.append(Row("3 peer", f"{name}: ScheduleGPipe step / ours ({executor})", theirs / t["ours"].median,
                        spread=max(times) / t["ours"].median - min(times) / t["ours"].median,
                        detail=f"torch.distributed.pipelining {theirs * 1e3:.2f} ms (one process per stage, gloo), "
                               f"ours {t['ours'].median * 1e3:.2f} ms"))
        rows.append(Row("3 peer", f"{name}: relative gradient difference from the peer ({executor})", diff,
                        unit="", target="<= 1e-05"))
        model.zero_grad(set_to_none=True)
    # What two threads can overlap on this machine at all (cores, memory bandwidth, the GIL for small layers).
    ceiling = hardware_scaling(model, x, M, steps, section="3 peer", name=f"{name}: ")
    here = attainable_speedup(ideal_speedup(M, K), ceiling.value)
    rows.append(ceiling)
    rows += [Row("3 peer", f"{name}: a perfect engine on this machine / ours ({executor})",
                 row.value * ideal_speedup(M, K) / here,
                 detail=f"the plain loop over what this machine allows ({here:.2f}x, from the ceiling above) "
                        "instead of over the ideal overlap") for executor, row in ours.items()]
    floor = statistics.median(perfect)
    rows.append(Row("3 peer", f"{name}: ScheduleGPipe step / a perfect engine (the bound)", theirs / floor,
                    detail="no engine on these stages beats the peer by more than this ratio"))
    return rows


def run(quick: bool = False) -> list[Row]:
    if quick:
        return case("medium", 4, 128, 32, 4, 3) + case("small", 8, 16, 8, 8, 3, ("threads", "inline"))
    return (case("medium", 24, 1024, 256, 8, 10)
            + case("small", 24, 64, 32, 32, 20, ("threads", "inline")))

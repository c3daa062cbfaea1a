"""Metric 3: against the peer a user would pick on one machine.

PyTorch's own ``torch.distributed.pipelining`` with ``ScheduleGPipe``: one
process per stage, gloo between them, the same stages (cut by the same
balance from the same seeded model), the same M and one intra-op thread per
stage. Both sides run the same number of steps; we compare wall time per step
and check that both leave the same gradients.
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

from .common import Row, timeit


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


def case(name: str, L: int, H: int, N: int, M: int, target: float, steps: int,
         executors: tuple[str, ...] = ("threads",)) -> list[Row]:
    K = 2
    times, peer_grads = peer_times(K, L, H, N, M, steps)
    rows = []
    for executor in executors:
        torch.manual_seed(0)
        model = mlp(L, H)
        x, y = _data(N, H)
        pipe = GPipe(model, partitions=K, chunks=M, checkpoint="never", threads_per_stage=1, executor=executor)
        model.zero_grad()
        pipe.step(x, y, nn.functional.mse_loss)
        diff = max((a - b).abs().max().item() / b.abs().max().clamp_min(1e-12).item()
                   for a, b in zip([p.grad for p in model.parameters()], peer_grads))
        ours = timeit(lambda p=pipe, x=x, y=y: p.step(x, y, nn.functional.mse_loss, seed=0), steps)
        theirs = statistics.median(times)
        rows.append(Row("3 peer", f"{name}: ScheduleGPipe step / ours ({executor})", theirs / ours.median,
                        target=f">= {target}", spread=(max(times) / ours.median - min(times) / ours.median),
                        detail=f"{L}x Linear({H},{H}), N={N}, M={M}: torch.distributed.pipelining "
                               f"{theirs * 1e3:.2f} ms, ours {ours.median * 1e3:.2f} ms; largest relative "
                               f"gradient difference {diff:.1e}"))
        rows.append(Row("3 peer", f"{name}: relative gradient difference ({executor})", diff, unit="",
                        target="<= 1e-05"))
    # The floor: the same micro-batches through the same layers in a plain loop, no engine and no overlap.
    torch.manual_seed(0)
    model = mlp(L, H)
    x, y = _data(N, H)

    def plain() -> None:
        for xi, yi in zip(torch.tensor_split(x, M), torch.tensor_split(y, M)):
            (nn.functional.mse_loss(model(xi), yi) / M).backward()

    floor = timeit(plain, steps).median / ideal_speedup(M, K)
    rows.append(Row("3 peer", f"{name}: ScheduleGPipe step / a perfect engine (the bound)",
                    statistics.median(times) / floor,
                    detail=f"the same {M} micro-batches in a plain loop on one thread, divided by the ideal "
                           f"overlap K*M/(M+K-1): {floor * 1e3:.2f} ms; no engine on these stages beats the peer "
                           "by more than this ratio"))
    return rows


def run(quick: bool = False) -> list[Row]:
    if quick:
        return case("medium", 4, 128, 32, 4, 1.25, 3) + case("small", 8, 16, 8, 8, 5.0, 3, ("threads", "inline"))
    return (case("medium", 24, 1024, 256, 8, 1.25, 10)
            + case("small", 24, 64, 32, 32, 5.0, 20, ("threads", "inline")))

"""Which worker runs which pipeline rank, and the actions each worker walks.

Workers, not stages, are the unit of execution. With the ``threads``
executor there is one worker thread per CUDA device, and for CPU ranks as
many as there are cores (K = 4 stages on 2 cores run on two threads, not
four: each thread hand-off costs tens of microseconds and four threads cannot
run at once on two cores anyway); ``ranks`` gives every rank a thread of its
own whatever the cores (stages that sleep or wait), and ``inline`` one worker
on the calling thread. A worker walks its ranks' actions in the table's tick
order, the order the validator proved free of deadlock. Kept apart from the
runtime because it is pure arithmetic on the placement and the table: it can
be read and tested without a thread.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from ..schedules.schedule import Action, Schedule, flatten

EXECUTORS = ("threads", "inline", "ranks")


def worker_of_ranks(devices: Sequence[torch.device], placement: Sequence[int], executor: str) -> list[int]:
    """The worker each rank (device slot) runs on: per CUDA device, CPU ranks spread over the cores."""
    if executor == "inline":
        return [0] * (max(placement) + 1)
    rank_device = {placement[s]: devices[s] for s in range(len(placement))}
    cuda = sorted({str(d) for d in rank_device.values() if d.type == "cuda"})
    cpu_ranks = sorted(r for r, d in rank_device.items() if d.type != "cuda")
    cpu_workers = len(cpu_ranks) if executor == "ranks" else min(len(cpu_ranks), os.cpu_count() or 1)
    workers = {}
    for r, d in rank_device.items():
        # CPU ranks in contiguous blocks: a micro-batch's hop to the next rank then mostly stays on its worker
        workers[r] = cuda.index(str(d)) if d.type == "cuda" else \
            len(cuda) + cpu_ranks.index(r) * cpu_workers // len(cpu_ranks)
    return [workers[r] for r in range(len(rank_device))]


def worker_orders(table: Schedule, worker_of_stage: Sequence[int], workers: int) -> list[list[Action]]:
    """Each worker's actions in tick order; an overlapped F&B issues its forward, then its backward
    (on CUDA each stage has its own stream, so the two can overlap; on a CPU worker they take turns)."""
    orders: list[list[Action]] = [[] for _ in range(workers)]
    for action in flatten(table):
        orders[worker_of_stage[action.stage]].append(action)
    return orders


def forward_only(M: int, S: int, worker_of_stage: Sequence[int], workers: int) -> list[list[Action]]:
    """Inference's orders: every forward, stage by stage on one worker, else the diagonal fill (F(i) on
    stage s at tick i + s) so that the stages overlap."""
    if workers == 1:
        table = [[Action("F", i, s) for i in range(M)] for s in range(S)]
    else:
        table = [[Action("F", t - s, s) for s in range(S) if 0 <= t - s < M] for t in range(M + S - 1)]
    return worker_orders(table, worker_of_stage, workers)

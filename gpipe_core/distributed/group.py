"""Joining the process group: one rank per stage, gloo on CPUs, NCCL on GPUs."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from ..engine.common import default_threads


def default_device(choice: str = "auto") -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` when every process here can have a GPU of its own, else CPU.

    NCCL cannot run two ranks on one GPU, so ``auto`` falls back to the CPU
    (gloo) when this machine has fewer GPUs than processes; ``cuda`` refuses.
    """
    local, here = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if choice == "cpu" or (choice == "auto" and here > gpus):
        if choice == "auto" and gpus and local == 0:
            print(f"gpipe: {here} processes but {gpus} GPU(s) here, so the stages run on the CPU (gloo)",
                  file=sys.stderr)
        return torch.device("cpu")
    if not gpus:
        raise ValueError("--device cuda asked for, but CUDA is not available here: use --device cpu")
    if here > gpus:
        raise ValueError(f"{here} processes on this machine but {gpus} GPU(s): NCCL needs a GPU of its own for "
                         "every process. Use --device cpu, spread the stages over more machines (--nnodes), "
                         "or run gpipe train without --distributed, where stages share a GPU on separate streams")
    return torch.device("cuda", local)


class NoTorchrun(RuntimeError):
    """Started without torchrun: the message says how to start it."""


def init(device: str = "auto", timeout_s: float = 600.0) -> torch.device:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR in the environment).

    NCCL for a CUDA device, gloo for CPU. Returns this rank's device.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise NoTorchrun(
            "no torchrun environment (RANK, WORLD_SIZE): start this with "
            "`torchrun --nproc-per-node K -m gpipe_core.distributed ...` or `gpipe train --distributed ...`"
        )
    dev = default_device(device)
    if dist.is_initialized():
        return dev
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        dist.init_process_group("nccl", timeout=timedelta(seconds=timeout_s), device_id=dev)
    else:
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
        torch.set_num_threads(default_threads(local_world))  # share the cores as the engine does
    return dev


@contextmanager
def one_process() -> Iterator[None]:
    """A process group of one rank (gloo, a file store) in this process, for K=1 without torchrun.

    Lets a notebook or a test run :class:`DistributedPipe` and torch's schedules
    in place; the group is destroyed when the block ends.
    """
    if dist.is_initialized():
        raise RuntimeError("a process group already exists in this process: use it, or destroy it first")
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("gloo", store=dist.FileStore(os.path.join(tmp, "store"), 1), rank=0, world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()

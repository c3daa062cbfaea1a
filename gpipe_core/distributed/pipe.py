"""DistributedPipe: the course's GPipe vocabulary on torch.distributed.pipelining."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.pipelining import Schedule1F1B, ScheduleGPipe

from ..engine.checkpoint import MODES
from ..engine.common import LossFn
from ..engine.microbatch import positive_int
from ..engine.partition import balance_by_count, check_sequential, split_module, validate_balance
from ..engine.rng import draw_base_seed
from ..engine.trace import Event, Trace
from .group import default_device
from .stages import StageModule, TracedStage

SCHEDULES: dict[str, type] = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}


class DistributedPipe:
    """This process's stage of a pipeline that ``torch.distributed.pipelining`` runs, one process per stage.

    Every rank builds the same ``nn.Sequential`` (same seed) and the same
    ``DistributedPipe``; rank j keeps stage j's layers (``pipe.module``, the
    parameters to give this rank's optimizer). Then every rank calls
    :meth:`step` in lockstep, as with ``GPipe.step``.

    Args:
        module: the whole model, an ``nn.Sequential`` (each rank keeps its slice).
        balance: layers per stage; default: by count over the processes.
        chunks: M, micro-batches per step; the batch must be a multiple of M.
        schedule: ``"gpipe"`` (``ScheduleGPipe``) or ``"1f1b"`` (``Schedule1F1B``, needs M >= K).
        checkpoint: ``"always"``, ``"except_last"`` or ``"never"`` (``torch.utils.checkpoint``).
        device: this rank's device (default: :func:`default_device`).
        group: the process group (default: the world, one rank per stage).
    """

    def __init__(self, module: nn.Sequential, balance: Sequence[int] | None = None, chunks: int = 1,
                 schedule: str = "gpipe", checkpoint: str = "never", device: torch.device | str | None = None,
                 group: dist.ProcessGroup | None = None) -> None:
        if not dist.is_initialized():
            raise RuntimeError("no process group: call gpipe_core.distributed.init() (under torchrun) or "
                               "torch.distributed.init_process_group(...) before DistributedPipe")
        check_sequential(module, "DistributedPipe")
        self.group = group
        self.rank, world = dist.get_rank(group), dist.get_world_size(group)
        balance = balance_by_count(len(module), world) if balance is None else balance
        self.balance = validate_balance(balance, len(module))
        if self.K != world:
            raise ValueError(f"balance {self.balance} has {self.K} stages but {world} processes run: start one "
                             f"process per stage (torchrun --nproc-per-node {self.K}, or --partitions {world})")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}: torch.distributed.pipelining runs one of "
                             f"{sorted(SCHEDULES)} (a hand-written table runs on gpipe_core.GPipe)")
        if not isinstance(checkpoint, str) or checkpoint not in MODES:
            raise ValueError(f"checkpoint {checkpoint!r} is not one of {MODES}: the distributed engine maps the "
                             "mode names onto torch.utils.checkpoint (policy objects run on gpipe_core.GPipe)")
        chunks = positive_int(chunks, "chunks (M)")
        if schedule == "1f1b" and chunks < self.K:
            raise ValueError(f"torch's Schedule1F1B needs M >= K: got M={chunks} for K={self.K}; "
                             f"use --micro-batches {self.K} or more, or --schedule gpipe")
        self.chunks, self.schedule_name, self.checkpoint = chunks, schedule, checkpoint
        self.device = default_device() if device is None else torch.device(device)
        self.module = split_module(module, self.balance)[self.rank].to(self.device)
        self._template = module if self.rank == 0 else None  # rank 0 rebuilds the whole model from it
        self._wrapped = StageModule(self.module, self.rank, checkpoint, self.device, self._clock)
        self.stage = TracedStage(self._wrapped, self.rank, self.K, self.device, group)
        self._schedule: Any = None
        self._loss_fn: LossFn | None = None
        self._batch = 0
        self._t0 = 0.0

    @property
    def K(self) -> int:
        return len(self.balance)

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    @property
    def is_last(self) -> bool:
        return self.rank == self.K - 1

    def _clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # time the work, not the launch
        return time.perf_counter()

    def _weighted(self, output: Tensor, target: Tensor) -> Tensor:
        assert self._loss_fn is not None
        return self._loss_fn(output, target) * (output.shape[0] / self._batch)

    def _check_batch(self, t: Tensor | None, name: str) -> int:
        if not isinstance(t, Tensor) or t.dim() == 0:
            raise ValueError(f"stage {self.rank} needs the {name} (a tensor with a batch dimension): "
                             f"pass it to step() on this rank")
        n = t.shape[0]
        if n < self.chunks or n % self.chunks:
            raise ValueError(f"a batch of {n} samples does not split into M={self.chunks} equal micro-batches: "
                             "torch.distributed.pipelining sizes its receive buffers from the first micro-batch, "
                             f"so use a batch that is a multiple of {self.chunks} "
                             "(gpipe_core.GPipe allows uneven ones)")
        return n

    def step(self, x: Tensor | None, target: Tensor | None, loss_fn: LossFn, seed: int | None = None) -> Tensor:
        """One training step on every rank at once; gradients accumulate into this rank's ``.grad``.

        ``x`` is read on the first stage, ``target`` on the last (other ranks may
        pass None). ``loss_fn`` must average over its batch; each micro-batch's
        loss is weighted by n_i/N so the gradients equal the full-batch ones.
        ``seed`` (default: drawn on rank 0 from torch's generator) seeds
        dropout with the engine's rule. Returns the full-batch loss on every rank.
        """
        if self._loss_fn is None:
            self._loss_fn = loss_fn
            cls = SCHEDULES[self.schedule_name]
            self._schedule = cls(self.stage, n_microbatches=self.chunks, loss_fn=self._weighted, scale_grads=False)
        elif loss_fn is not self._loss_fn:
            raise ValueError("step() got a different loss_fn than the first step: torch builds the schedule "
                             "around one loss function, so make a new DistributedPipe for a new one")
        if self.is_first:
            self._batch = self._check_batch(x, "input batch x")
        if self.is_last:
            self._batch = self._check_batch(target, "target")
        # One all-reduce gives every rank rank 0's seed and lines their clocks up (nobody leaves it early).
        mine = (draw_base_seed() if seed is None else seed) if self.is_first else 0
        sync = torch.tensor([mine], dtype=torch.int64, device=self.device)
        dist.all_reduce(sync, group=self.group)
        self._wrapped.begin_step(self.chunks, int(sync.item()))
        self.stage.events = []
        self._t0 = self._clock()
        kwargs: dict[str, Any] = {"return_outputs": False}
        if self.is_last:
            losses: list[Tensor] = []
            kwargs.update(target=target.to(self.device), losses=losses)  # type: ignore[union-attr]
        args = (x.to(self.device),) if self.is_first else ()  # type: ignore[union-attr]
        self._schedule.step(*args, **kwargs)
        total = torch.stack(losses).sum().detach() if self.is_last else torch.zeros((), device=self.device)
        total = total.reshape(1).float()
        dist.broadcast(total, src=self._global(self.K - 1), group=self.group)
        return total[0].cpu()

    def events(self) -> list[Event]:
        """This rank's actions of the last step, in seconds since the step's common start."""
        shifted = [Event(e.stage, e.microbatch, e.kind, e.start - self._t0, e.end - self._t0)
                   for e in self.stage.events]
        shifted += [Event(self.rank, i, "R", s - self._t0, e - self._t0) for i, s, e in self._wrapped.recomputes]
        return shifted

    def gather_trace(self) -> Trace | None:
        """Collective: every rank's events of the last step as one Trace on rank 0 (None elsewhere)."""
        parts: list[Any] | None = [None] * self.K if self.is_first else None
        dist.gather_object(self.events(), parts, dst=self._global(0), group=self.group)
        if parts is None:
            return None
        trace = Trace(self.K, sorted((e for part in parts for e in part), key=lambda e: (e.start, e.stage)))
        return trace

    def gather_model(self) -> nn.Sequential | None:
        """Collective: on rank 0, a CPU copy of the whole model with every stage's parameters and ``.grad``.

        Used to compare against the sequential model and to save a checkpoint
        of the trained model; None on the other ranks.
        """
        state = [(p.detach().cpu(), None if p.grad is None else p.grad.detach().cpu())
                 for p in self.module.parameters()]
        parts: list[Any] | None = [None] * self.K if self.is_first else None
        dist.gather_object(state, parts, dst=self._global(0), group=self.group)
        if parts is None:
            return None
        assert self._template is not None
        whole = copy.deepcopy(self._template).cpu()
        for part, stage_state in zip(split_module(whole, self.balance), parts):
            for p, (value, grad) in zip(part.parameters(), stage_state):
                p.data.copy_(value)
                p.grad = None if grad is None else grad.clone()
        return whole

    def _global(self, group_rank: int) -> int:
        return dist.get_global_rank(self.group, group_rank) if self.group is not None else group_rank

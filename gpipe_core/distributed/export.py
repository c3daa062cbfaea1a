"""Our tables on PyTorch's runtime: any valid table, one process per device, torch doing the talking.

:class:`~gpipe_core.distributed.DistributedPipe` runs torch's own fixed
schedule classes. :class:`TablePipe` instead hands torch a table written here
(a built-in of :mod:`gpipe_core.schedules.zoo`, or a learner's), with virtual stages and
split backwards: every rank keeps the stages its device holds, the table
becomes torch's compute-only IR (:func:`gpipe_core.distributed.torch_ir.to_torch`),
and torch's ``_PipelineScheduleRuntime`` lowers it (adds the sends and
receives) and runs it over gloo or NCCL. Seeds, loss weighting and
recomputation follow the engine's rules (see
:mod:`gpipe_core.distributed.stages`), so the gradients equal
``gpipe_core.GPipe``'s and the sequential model's.

``_PipelineScheduleRuntime`` is a torch internal: this module checks it is
there and says which torch has it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..engine.common import LossFn
from ..engine.partition import balance_by_count, check_sequential, split_module, validate_balance
from ..engine.rng import draw_base_seed
from ..schedules.schedule import ScheduleLike
from ..schedules.validation import resolve
from .group import default_device
from .stages import StageModule, TracedStage
from .torch_ir import to_torch


def _runtime_class() -> type:
    try:
        from torch.distributed.pipelining.schedules import _PipelineScheduleRuntime
    except ImportError:
        raise RuntimeError(f"running a table on torch's runtime needs torch.distributed.pipelining.schedules."
                           f"_PipelineScheduleRuntime (torch 2.5 or newer; tested on 2.13); this is torch "
                           f"{torch.__version__}. Upgrade torch, or run the table on gpipe_core.GPipe") from None
    return _PipelineScheduleRuntime


class TablePipe:
    """This process's stages of a pipeline whose schedule is our table, run by torch's runtime.

    Args:
        module: the whole model, an ``nn.Sequential`` (each rank keeps its stages' slices).
        balance: layers per stage, S = K * virtual entries; default: by count.
        chunks: M; the batch must be a multiple of M (torch sizes its buffers from the first micro-batch).
        schedule: a name of :data:`gpipe_core.schedules.zoo.BUILTINS` or a table.
        virtual: V, stages per process; placement: device of each stage (default: the built-in's, or loop).
        checkpoint: ``"never"``, ``"always"`` or ``"except_last"`` (``torch.utils.checkpoint``).
    """

    def __init__(self, module: nn.Sequential, balance: Sequence[int] | None = None, chunks: int = 1,
                 schedule: ScheduleLike = "1f1b", virtual: int = 1, placement: Sequence[int] | None = None,
                 checkpoint: str = "never", device: torch.device | str | None = None,
                 group: dist.ProcessGroup | None = None) -> None:
        if isinstance(schedule, str) and schedule.lower() == "dualpipe":
            raise ValueError("torch's runtime cannot run DualPipe: a PipelineStage always sends to stage s+1, and "
                             "DualPipe's chain is cut between stage copies K-1 and K; run it on "
                             "gpipe_core.GPipe(schedule='dualpipe'), or export 'dualpipev'")
        if not dist.is_initialized():
            raise RuntimeError("no process group: call gpipe_core.distributed.init() (under torchrun) before TablePipe")
        check_sequential(module, "TablePipe")
        runtime = _runtime_class()
        self.group = group
        self.rank, self.K = dist.get_rank(group), dist.get_world_size(group)
        S = self.K * virtual
        self.balance = validate_balance(balance_by_count(len(module), S) if balance is None else balance, len(module))
        if len(self.balance) != S:
            raise ValueError(f"balance {self.balance} has {len(self.balance)} stages but {self.K} processes x "
                             f"virtual={virtual} need {S}")
        self.placement = list(placement) if placement is not None else _default_placement(schedule, self.K, virtual)
        self.chunks, self.checkpoint = chunks, checkpoint
        self.table = resolve(schedule, chunks, self.K, self.placement)
        self.device = default_device() if device is None else torch.device(device)
        parts = split_module(module, self.balance)
        self.mine = [s for s in range(S) if self.placement[s] == self.rank]
        self.modules = [StageModule(parts[s].to(self.device), s, checkpoint, self.device, time.perf_counter)
                        for s in self.mine]
        self.stages = [TracedStage(m, s, S, self.device, group) for m, s in zip(self.modules, self.mine)]
        self._template = module if self.rank == 0 else None
        self._runtime_cls, self._schedule, self._loss_fn = runtime, None, None
        self._batch = 0
        self.S = S

    @property
    def parameters_here(self) -> list[nn.Parameter]:
        """This rank's parameters (give them to this rank's optimizer)."""
        return [p for m in self.modules for p in m.layers.parameters()]

    def _weighted(self, output: Tensor, target: Tensor) -> Tensor:
        assert self._loss_fn is not None
        return self._loss_fn(output, target) * (output.shape[0] / self._batch)

    def step(self, x: Tensor | None, target: Tensor | None, loss_fn: LossFn, seed: int | None = None) -> Tensor:
        """One training step on every rank at once (as ``DistributedPipe.step``); returns the full-batch loss."""
        first, last = 0 in self.mine, self.S - 1 in self.mine
        if self._schedule is None:
            self._loss_fn = loss_fn
            self._schedule = self._runtime_cls(self.stages, n_microbatches=self.chunks, loss_fn=self._weighted,
                                               scale_grads=False)
            self._schedule._prepare_schedule_with_comms(to_torch(self.table, self.placement))
        elif loss_fn is not self._loss_fn:
            raise ValueError("step() got a different loss_fn than the first step: make a new TablePipe")
        for t, here, what in ((x, first, "input batch x"), (target, last, "target")):
            if here:
                if not isinstance(t, Tensor) or t.shape[0] % self.chunks:
                    raise ValueError(f"rank {self.rank} needs the {what}: a batch that is a multiple of "
                                     f"M={self.chunks}")
                self._batch = t.shape[0]
        mine = (draw_base_seed() if seed is None else seed) if first else 0
        sync = torch.tensor([mine], dtype=torch.int64, device=self.device)
        dist.all_reduce(sync, group=self.group)  # every rank gets the seed of the rank holding stage 0
        for m in self.modules:
            m.begin_step(self.chunks, int(sync.item()))
        kwargs: dict[str, Any] = {"return_outputs": False}
        losses: list[Tensor] = []
        if last:
            kwargs.update(target=target.to(self.device), losses=losses)  # type: ignore[union-attr]
        self._schedule.step(*((x.to(self.device),) if first else ()), **kwargs)  # type: ignore[union-attr]
        total = torch.stack(losses).sum().detach().reshape(1).float() if last else torch.zeros(1, device=self.device)
        dist.all_reduce(total, group=self.group)  # only the last stage's rank adds a loss
        return total[0].cpu()

    def gather_model(self) -> nn.Sequential | None:
        """Collective: on rank 0, a CPU copy of the whole model with every stage's parameters and ``.grad``."""
        state = {s: [(p.detach().cpu(), None if p.grad is None else p.grad.detach().cpu())
                     for p in m.layers.parameters()] for s, m in zip(self.mine, self.modules)}
        parts: list[Any] | None = [None] * self.K if self.rank == 0 else None
        root = dist.get_global_rank(self.group, 0) if self.group is not None else 0
        dist.gather_object(state, parts, dst=root, group=self.group)
        if parts is None:
            return None
        assert self._template is not None
        whole = copy.deepcopy(self._template).cpu()
        merged = {s: v for part in parts for s, v in part.items()}
        for s, stage in enumerate(split_module(whole, self.balance)):
            for p, (value, grad) in zip(stage.parameters(), merged[s]):
                p.data.copy_(value)
                p.grad = None if grad is None else grad.clone()
        return whole


def _default_placement(schedule: ScheduleLike, K: int, virtual: int) -> list[int]:
    if isinstance(schedule, str):
        from ..schedules.zoo import BUILTINS

        if schedule in BUILTINS and BUILTINS[schedule].virtual == virtual:
            return BUILTINS[schedule].placement(K)
    return [s % K for s in range(K * virtual)]

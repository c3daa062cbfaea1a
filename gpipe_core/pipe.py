"""The public wrapper: ``GPipe(module, balance=..., chunks=M, ...)``.

It ties the pieces together: the partitioner cuts the ``nn.Sequential``, each
slice becomes a :class:`~gpipe_core.stage.Stage` on its device, the schedule
(a name or a learner's table) is validated once, and every ``step`` splits the
batch, runs the table on the workers and leaves in each parameter's ``.grad``
what the sequential model's full-batch backward would leave. The caller owns
the optimizer, exactly as with a plain model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import torch
from torch import Tensor, nn

from . import microbatch, partition
from .checkpoint import MODES
from .devices import DeviceLike, resolve_devices
from .rng import draw_base_seed
from .runtime import Runtime
from .schedule import Action, ScheduleLike, resolve, stage_orders
from .stage import LossFn, Stage
from .trace import Trace


class GPipe(nn.Module):
    """Pipeline-parallel ``nn.Sequential`` with micro-batching and re-materialisation.

    Args:
        module: the model, an ``nn.Sequential`` whose items are the layers to balance.
        balance: layers per stage, e.g. ``[3, 3, 2, 2]``; sums to ``len(module)``.
        partitions: K, when no balance is given (layers are split by count).
        chunks: M, the number of micro-batches per step.
        devices: one per stage, one for all, or None (CUDA round-robin, else CPU).
        checkpoint: ``"always"``, ``"except_last"``, ``"never"`` or a policy object.
        schedule: ``"gpipe"``, ``"1f1b"`` or a table (list of ticks of Actions).
        threads_per_stage: intra-op threads of each CPU stage (default: cores / K).
        timeout: seconds a step may take before it is stopped (None: no limit).
        check_finite: stop the step when a micro-batch's loss is NaN or infinite.
        executor: ``"threads"`` (one worker per stage; stages overlap) or ``"inline"`` (the
            table walked on the calling thread: no hand-offs, for stages of microseconds).
    """

    def __init__(
        self,
        module: nn.Sequential,
        balance: Sequence[int] | None = None,
        partitions: int | None = None,
        chunks: int = 1,
        devices: Sequence[DeviceLike] | DeviceLike | None = None,
        checkpoint: Any = "except_last",
        schedule: ScheduleLike = "gpipe",
        threads_per_stage: int | None = None,
        timeout: float | None = None,
        check_finite: bool = True,
        executor: str = "threads",
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Sequential):
            raise TypeError(
                f"GPipe needs an nn.Sequential, got {type(module).__name__}: "
                "wrap the layers in order, e.g. nn.Sequential(*layers)"
            )
        if len(module) == 0:
            raise ValueError("the nn.Sequential is empty: give GPipe at least one layer")
        if balance is None:
            K = partitions if partitions is not None else (
                1 if devices is None or isinstance(devices, (str, int, torch.device)) else len(devices))
            balance = partition.balance_by_count(len(module), K)
        elif partitions is not None and partitions != len(balance):
            raise ValueError(f"partitions={partitions} but balance {list(balance)} has {len(balance)} stages: "
                             "give one of them, or make them agree")
        self.balance = partition.validate_balance(balance, len(module))
        if isinstance(checkpoint, str) and checkpoint not in MODES:
            raise ValueError(f"unknown checkpoint {checkpoint!r}: use one of {MODES} or a policy object")
        if not isinstance(chunks, int) or chunks < 1:
            raise ValueError(f"chunks (M) must be a positive integer, got {chunks!r}")
        self.chunks = chunks
        self.checkpoint = checkpoint
        self.devices = resolve_devices(devices, self.K)
        self.table = resolve(schedule, chunks, self.K)
        self._orders = stage_orders(self.table, self.K)
        self.partitions = nn.ModuleList(
            part.to(dev) for part, dev in zip(partition.split_module(module, self.balance), self.devices)
        )
        self.stages = [Stage(j, part, dev, checkpoint) for j, (part, dev) in
                       enumerate(zip(self.partitions, self.devices))]
        self.runtime = Runtime(self.stages, threads_per_stage, timeout, executor)
        self.check_finite = check_finite
        self._trace: Trace | None = None
        self._traced = False  # whether a step has run whose events the stages still hold
        self.memory: list[int] | None = None

    @property
    def K(self) -> int:
        return len(self.balance)

    def forward(self, x: Tensor) -> Tensor:
        """Inference: pipeline the forward pass over M micro-batches (no gradients kept)."""
        xs = [t.to(self.devices[0]) for t in microbatch.split(x, self.chunks)]  # before _begin: streams wait
        orders = [[Action("F", i, j) for i in range(len(xs))] for j in range(self.K)]
        self._begin(xs, None, 0, measure_memory=False)
        self.runtime.run(orders, xs, grad=False)
        self._traced, self._trace = True, None
        last = self.stages[-1]
        return microbatch.join([last.outputs[i] for i in range(len(xs))])

    def step(self, x: Tensor, target: Tensor, loss_fn: LossFn, seed: int | None = None,
             measure_memory: bool = False) -> Tensor:
        """One training step through the schedule; gradients accumulate into ``.grad``.

        ``loss_fn(output, target)`` must average over the batch (the PyTorch
        default); micro-batch losses are weighted by their share of the batch,
        so the gradients equal the full-batch ones. Returns the full-batch loss.
        """
        xs = [t.to(self.devices[0]) for t in microbatch.split(x, self.chunks)]  # before _begin: streams wait
        if not isinstance(target, Tensor) or target.shape[:1] != x.shape[:1]:
            raise ValueError(f"target must be a tensor with the batch's {x.shape[0]} samples in dimension 0")
        ts = [t.to(self.devices[-1]) for t in torch.tensor_split(target, self.chunks, dim=0)]
        seed = draw_base_seed() if seed is None else seed
        loss = (self._finite(loss_fn) if self.check_finite else loss_fn, ts, microbatch.weights(xs))
        self._begin(xs, loss, seed, measure_memory)
        self.runtime.run(self._orders, xs, grad=True)
        self._traced, self._trace = True, None
        if measure_memory:
            self.memory = [s.meter.peak for s in self.stages if s.meter is not None]
        losses = self.stages[-1].losses
        return torch.stack([losses[i] for i in range(len(xs))]).sum()

    @staticmethod
    def _finite(loss_fn: LossFn) -> LossFn:
        def checked(output: Tensor, target: Tensor) -> Tensor:
            value = loss_fn(output, target)
            # a CPU scalar is read directly; elsewhere a reduction (this syncs the last stage's stream)
            finite = math.isfinite(value.item()) if value.numel() == 1 and not value.is_cuda \
                else bool(torch.isfinite(value).all())
            if not finite:
                raise FloatingPointError(
                    f"the loss is {value.detach().flatten()[0].item()}: look for NaN or inf in this micro-batch's "
                    "inputs or a learning rate that diverged (check_finite=False turns this check off)"
                )
            return value

        return checked

    def _begin(self, xs: list[Tensor], loss: Any, seed: int, measure_memory: bool) -> None:
        self._clock_base = _clock_base(self.devices)
        self._traced, self._trace = False, None
        for stage in self.stages:
            if stage.stream is not None:  # inputs, targets and updated weights come from the default stream
                stage.stream.wait_stream(torch.cuda.current_stream(stage.device))
            stage.begin_step(len(xs), seed, loss if stage.index == self.K - 1 else None, measure_memory)

    @property
    def trace(self) -> Trace | None:
        """The timed events of the last step (built on first access: a step only stores raw stamps)."""
        if self._trace is None and self._traced:
            self._trace = self._collect_trace()
        return self._trace

    def _collect_trace(self) -> Trace:
        trace = Trace(self.K)
        for stage in self.stages:
            for i, kind, start, end in stage.events:
                trace.add(stage.index, i, kind, _seconds(start, self._clock_base, stage.device),
                          _seconds(end, self._clock_base, stage.device))
        trace.events.sort(key=attrgetter("start"))
        return trace

    def close(self) -> None:
        """Remove the hooks this pipe put on the model's dropout layers."""
        for stage in self.stages:
            stage.rng.remove()


def _clock_base(devices: list[torch.device]) -> dict[Any, Any]:
    import time

    base: dict[Any, Any] = {"host": time.perf_counter()}
    for dev in {d for d in devices if d.type == "cuda"}:
        event = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(dev)
        event.record(torch.cuda.current_stream(dev))
        base[dev] = event
    return base


def _seconds(stamp: Any, base: dict[Any, Any], device: torch.device) -> float:
    if isinstance(stamp, float):
        return stamp
    return base["host"] + base[device].elapsed_time(stamp) / 1e3

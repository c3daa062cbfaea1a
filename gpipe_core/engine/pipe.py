"""The public wrapper: ``GPipe(module, balance=..., chunks=M, ...)``.

It ties the pieces together: the partitioner cuts the ``nn.Sequential`` into
stages, each stage goes to its device, the schedule (a name or a learner's
table) is validated once, and every ``step`` splits the batch, lets the
runtime execute the table and leaves in each parameter's ``.grad`` what the
sequential model's full-batch backward would leave. The caller owns the
optimizer, exactly as with a plain model.

K is the number of devices (pipeline depth) and M the number of
micro-batches, as in the paper. With virtual stages each device holds V
stages, so the model is cut into S = K * V pieces and ``balance`` has S counts.

``schedule="dualpipe"`` (two directions, :mod:`gpipe_core.schedules.bidirectional`) cuts
the model into K pieces and holds each twice; its steps go to a
:class:`~gpipe_core.engine.two_way.TwoWayPipe` on the same executor, whose stage copies
(``placement`` has 2K entries) give ``trace`` and ``memory`` as the runtime's do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..schedules.actions import flatten
from ..schedules.schedule import ScheduleLike, check_placement, loop_placement
from ..schedules.validation import resolve
from ..schedules.zoo import lookup
from . import microbatch, partition, tensors
from .checkpoint import check_checkpoint
from .common import Loss, LossFn, positive_int
from .devices import DeviceLike, resolve_devices
from .rng import draw_base_seed
from .runtime import Runtime, StepResult
from .stage import Stage
from .trace import Clock, Trace
from .two_way import TwoWayPipe


class GPipe(nn.Module):
    """Pipeline-parallel ``nn.Sequential`` with micro-batching and re-materialisation.

    Args (keyword-only after ``module``):
        module: the model, an ``nn.Sequential`` whose items are the layers to balance.
        balance: layers per stage, e.g. ``[3, 3, 2, 2]``; sums to ``len(module)``; K * V entries.
        partitions: K, the number of devices, when no balance is given (layers split by count).
        chunks: M, the number of micro-batches per step.
        devices: one per device (K), one for all, or None (CUDA round-robin, else CPU).
        virtual: V, stages per device (interleaved and V-shaped schedules); S = K * V.
        placement: the device (0..K-1) of each of the S stages; default: stage s on device s mod K.
        checkpoint: ``"always"``, ``"except_last"``, ``"never"`` or a policy object.
        schedule: a built-in name (``"gpipe"``, ``"1f1b"``, ...; see ``gpipe_core.schedules.zoo``) or a table;
            ``"dualpipe"`` runs two directions (K even, M even and >= 2K; CPU; no running statistics).
        deferred_batch_norm: BatchNorm running statistics from the whole batch, once per step.
        threads_per_stage: intra-op threads of each CPU worker (default: cores / workers).
        timeout: seconds a step may take before it is stopped (None: no limit).
        check_finite: stop the step when a micro-batch's loss is NaN or infinite.
        executor: ``"threads"`` (workers overlap stages) or ``"inline"`` (the table walked on the
            calling thread: no hand-offs, for stages of microseconds).
    """

    def __init__(self, module: nn.Sequential, *, balance: Sequence[int] | None = None, partitions: int | None = None,
                 chunks: int = 1, devices: Sequence[DeviceLike] | DeviceLike | None = None, virtual: int = 1,
                 placement: Sequence[int] | None = None, checkpoint: Any = "except_last",
                 schedule: ScheduleLike = "gpipe", deferred_batch_norm: bool = False,
                 threads_per_stage: int | None = None, timeout: float | None = None, check_finite: bool = True,
                 executor: str = "threads") -> None:
        super().__init__()
        partition.check_sequential(module, "GPipe")
        self._two_way: TwoWayPipe | None = None
        self.check_finite = check_finite
        self._result: Any = None
        self._trace: Trace | None = None
        self.memory: list[int] | None = None
        builtin = lookup(schedule) if isinstance(schedule, str) else None  # the registry, asked once
        if builtin is not None and builtin.two_way:
            if virtual != 1 or placement is not None or deferred_batch_norm:
                raise ValueError(f"schedule {schedule!r} places its 2K stage copies itself and refuses BatchNorm: "
                                 "leave virtual, placement and deferred_batch_norm out")
            self._init_two_way(module, balance, partitions, chunks, devices, checkpoint, timeout, executor)
            return
        V = positive_int(virtual, "virtual (V, stages per device)")
        if builtin is not None and builtin.virtual > 1 and placement is None:
            if V not in (1, builtin.virtual):
                raise ValueError(f"schedule {schedule!r} runs {builtin.virtual} stages per device, not virtual={V}: "
                                 "leave virtual out, or pass a table of your own with a placement")
            V = builtin.virtual
        self.chunks = positive_int(chunks, "chunks (M)")
        self.checkpoint = check_checkpoint(checkpoint)
        K = self._devices_wanted(partitions, balance, devices, V, placement)
        if balance is None:
            balance = partition.balance_by_count(len(module), K * V)
        self.balance = partition.validate_balance(balance, len(module))
        self.S = len(self.balance)
        if placement is None:
            if self.S % K:
                raise ValueError(f"balance has {self.S} stages, not a multiple of K={K} devices: give K * V "
                                 "counts, or a placement saying which device holds each stage")
            placement = builtin.placement(K) if builtin is not None and builtin.virtual > 1 \
                else loop_placement(K, self.S // K)
        self.placement = check_placement(placement, self.S)
        self.K = max(self.placement) + 1
        if deferred_batch_norm:
            from .batchnorm import convert_deferred_batch_norm

            module = convert_deferred_batch_norm(module, self.chunks)
        per_device = resolve_devices(devices, self.K)
        self.devices = [per_device[d] for d in self.placement]  # the device of each stage
        if builtin is None:
            _check_table_m(schedule, self.chunks)
        self.table = resolve(builtin or schedule, self.chunks, self.K, None if self.S == self.K else self.placement)
        self.stage_modules = nn.ModuleList(
            part.to(dev) for part, dev in zip(partition.split_module(module, self.balance), self.devices))
        self._clock = Clock()
        self._stages = [Stage(s, part, dev, self.checkpoint, self._clock)
                        for s, (part, dev) in enumerate(zip(self.stage_modules, self.devices))]
        self._runtime = Runtime(self._stages, self.table, self.placement, threads_per_stage, timeout, executor)

    def _init_two_way(self, module: nn.Sequential, balance: Sequence[int] | None, partitions: int | None,
                      chunks: int, devices: Any, checkpoint: Any, timeout: float | None, executor: str) -> None:
        """DualPipe: K model pieces, each held twice, run by a TwoWayPipe (module docstring)."""
        self.chunks, self.checkpoint = positive_int(chunks, "chunks (M)"), check_checkpoint(checkpoint)
        K = self._devices_wanted(partitions, balance, devices, 1, None)
        self.devices = resolve_devices(devices, K)
        if any(d.type != "cpu" for d in self.devices):
            raise ValueError("schedule 'dualpipe' runs on CPU workers only: pass devices='cpu'")
        self._clock = Clock()
        self._two_way = TwoWayPipe(module, K, self.chunks, balance, self.checkpoint, executor, timeout, self._clock)
        self.balance, self.S, self.K = self._two_way.balance, K, K
        self.table, self.placement = self._two_way.table, self._two_way.placement
        self.stage_modules = nn.ModuleList(self._two_way.chunks)  # the copies stay out of parameters()

    @staticmethod
    def _devices_wanted(partitions: int | None, balance: Sequence[int] | None, devices: Any, V: int,
                        placement: Sequence[int] | None) -> int:
        """K from whichever argument says it, checking that they agree."""
        if placement is not None:
            return max(int(d) for d in placement) + 1
        if balance is not None:
            K = len(balance) // V
            if partitions is not None and partitions != K:
                raise ValueError(f"partitions={partitions} but balance {list(balance)} has {len(balance)} stages "
                                 f"({K} devices x {V} virtual): give one of them, or make them agree")
            return max(K, 1)
        if partitions is not None:
            return positive_int(partitions, "partitions (K)")
        if devices is None or isinstance(devices, (str, int, torch.device)):
            return 1
        return len(devices)

    def forward(self, x: Any) -> Any:
        """Inference: pipeline the forward pass over M micro-batches (no gradients kept)."""
        if self._two_way is not None:
            return self._two_way.forward(x)
        xs = self._split(x)
        result = self._run(xs, None, 0, measure_memory=False)
        return microbatch.join([result.outputs[i] for i in range(len(xs))])

    def step(self, x: Any, target: Tensor, loss_fn: LossFn, seed: int | None = None,
             measure_memory: bool = False, reduction: str = "mean") -> Tensor:
        """One training step through the schedule; gradients accumulate into ``.grad``.

        ``loss_fn(output, target)`` averages over the batch (``reduction="mean"``,
        the PyTorch default: micro-batch losses are weighted by their share of the
        batch) or adds over it (``reduction="sum"``: they are added as they are),
        so the gradients equal the full-batch ones. Returns the full-batch loss.
        """
        tensors.check(x, "the batch")
        n = tensors.first(x).shape[0]
        if not isinstance(target, Tensor) or target.shape[:1] != (n,):
            raise ValueError(f"target must be a tensor with the batch's {n} samples in dimension 0")
        if self._two_way is not None:
            return self._two_way_step(self._two_way, x, target, loss_fn, seed, measure_memory, reduction)
        xs = self._split(x)
        targets = [t.to(self.devices[-1]) for t in torch.tensor_split(target, len(xs), dim=0)]
        loss = Loss(_finite(loss_fn) if self.check_finite else loss_fn, targets,
                    microbatch.loss_weights(xs, reduction))
        result = self._run(xs, loss, draw_base_seed() if seed is None else seed, measure_memory)
        if measure_memory:
            self.memory = result.memory
        return torch.stack([result.outputs[i] for i in range(len(xs))]).sum()

    def _two_way_step(self, two_way: TwoWayPipe, x: Any, target: Tensor, loss_fn: LossFn, seed: int | None,
                      measure_memory: bool, reduction: str) -> Tensor:
        """A DualPipe step, run by its TwoWayPipe; its stamps and bytes kept as the runtime's would be."""
        self._clock.begin(self.devices)
        self._result, self._trace = None, None
        loss = two_way.step(x, target, _finite(loss_fn) if self.check_finite else loss_fn, seed, reduction,
                            measure_memory)
        self._result = StepResult({}, two_way.stamps(), two_way.memory)
        if measure_memory:
            self.memory = two_way.memory
        return loss

    def _split(self, x: Any) -> list[Any]:
        tensors.check(x, "the batch")
        # moved before the step starts, so the stages' streams wait for the copies
        return [tensors.to(t, self.devices[0]) for t in microbatch.split(x, self.chunks)]

    def _run(self, xs: list[Any], loss: Loss | None, seed: int, measure_memory: bool) -> Any:
        self._clock.begin(self.devices)
        self._result, self._trace = None, None
        self._result = self._runtime.run(xs, loss, seed, measure_memory)
        return self._result

    @property
    def trace(self) -> Trace | None:
        """The timed events of the last step (built on first access: a step only stores raw stamps)."""
        if self._trace is None and self._result is not None:
            self._trace = Trace.from_stamps(self.K, self._result.stamps, self._clock,
                                            None if len(self.placement) == self.K else self.placement)
        return self._trace

    def close(self) -> None:
        """Remove the hooks this pipe put on the model's dropout layers."""
        if self._two_way is not None:
            self._two_way.close()
        for stage in getattr(self, "_stages", ()):
            stage.rng.remove()

    def __enter__(self) -> GPipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _apply(self, fn: Any, recurse: bool = True) -> GPipe:
        raise RuntimeError("GPipe places its stages on devices when it is built and cannot be moved: build a new "
                           "GPipe with devices=[...] (the model's parameters move with it)")

    def _moving(self, *args: Any, **kwargs: Any) -> GPipe:
        return self._apply(None)

    to = cuda = cpu = _moving  # type: ignore[assignment]


def _check_table_m(table: Any, chunks: int) -> None:
    """M is ``chunks``; a table of one's own must run exactly that many micro-batches (the error says which)."""
    try:
        M = 1 + max(a.microbatch for a in flatten(table))
    except (TypeError, AttributeError, ValueError):
        return  # not a table of actions: the validator names what is wrong with it
    if M != chunks:
        raise ValueError(f"the schedule runs micro-batches 0..{M - 1} (M={M}) but chunks={chunks}: pass "
                         f"chunks={M}, or build the table for M={chunks} micro-batches")


def _finite(loss_fn: LossFn) -> LossFn:
    def checked(output: Any, target: Tensor) -> Tensor:
        value = loss_fn(output, target)
        # a CPU scalar is read directly; elsewhere a reduction (this syncs the last stage's stream)
        finite = math.isfinite(value.item()) if value.numel() == 1 and not value.is_cuda \
            else bool(torch.isfinite(value).all())
        if not finite:
            raise FloatingPointError(
                f"the loss is {value.detach().flatten()[0].item()}: look for NaN or inf in this micro-batch's "
                "inputs or a learning rate that diverged (check_finite=False turns this check off)")
        return value

    return checked

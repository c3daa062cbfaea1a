"""Run a DualPipe table exactly, with the engine's own stages, inline or one thread per device.

Why a runner of its own: :class:`~gpipe_core.GPipe`'s runtime sends every
micro-batch from stage s to stage s+1 and runs one module per stage, while
DualPipe (:mod:`gpipe_core.schedules.bidirectional`) cuts its chain between stage
copies K-1 and K and runs each chunk twice, once per direction. Rather than
teach the runtime that cut, :class:`TwoWayPipe` walks the table itself, as the
engine's two executors do: tick by tick on the calling thread (``inline``),
or one thread per device running its own order and waiting for what it
receives (``threads``). Each action goes to an engine
:class:`~gpipe_core.engine.stage.Stage`, so recomputation, split backwards (I, W),
dropout seeding and loss weighting are the engine's.

What it adds is the two-way bookkeeping:

* direction 0 runs the caller's chunks; direction 1 runs copies of them
  (DeepSeek's parameters held twice), refreshed from the originals at every
  step so an optimizer's updates reach both;
* the batch's first M/2 micro-batches go down (direction 0), the last M/2
  up: the table's micro-batch i of stage copy s is the batch's micro-batch
  (s // K)(M/2) + i, and it runs chunk s mod K. Each stage is the engine's
  stage of that chunk, so micro-batch n on chunk j draws the dropout mask
  :func:`~gpipe_core.sequential_step` draws for (n, j);
* after the step the copies' gradients are added into the originals'
  ``.grad`` (what DeepSeek's all-reduce of the two copies does), and what the
  copies' forwards changed in their buffers is added to the originals'
  buffers: counters and sums come out as the sequential model's. A running
  average (BatchNorm's, or an InstanceNorm tracking statistics) cannot: both
  directions start the step from the same statistics and each updates them
  in its own order, so the sum of their changes is not the sequential
  model's micro-batch-by-micro-batch average. Such a model is refused, with
  the layer named, rather than silently trained differently.

:class:`~gpipe_core.GPipe` with ``schedule="dualpipe"`` builds one of these and
hands its steps to it (its stamps become ``GPipe.trace``, its measured bytes
``GPipe.memory``); inference (``pipe(x)``) runs every micro-batch through the
original chunks, which is the sequential model's forward.

CPU only: the copies live where the originals do.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

from ..schedules.actions import Action, Cell, actions_of
from ..schedules.bidirectional import check_dualpipe, dualpipe_schedule
from ..schedules.schedule import device_orders, v_placement
from . import microbatch, tensors
from .common import Loss, LossFn, StageError, positive_int
from .memory import MemoryMeter
from .partition import balance_by_count, check_sequential, split_module, validate_balance
from .rng import draw_base_seed
from .stage import Stage
from .trace import Clock, StageStamps


def check_no_running_averages(module: nn.Module) -> None:
    """Refuse layers whose buffers hold a running average: DualPipe's two directions cannot reproduce it."""
    for name, layer in module.named_modules():
        if isinstance(layer, _NormBase) and layer.track_running_stats:
            raise ValueError(
                f"layer {name!r} ({type(layer).__name__}) keeps running statistics, and DualPipe's two directions "
                "update them from the same start in two orders, so they would differ from the sequential model's: "
                "use another schedule (e.g. 'dualpipev', the same order in one direction), or build the layer "
                "with track_running_stats=False")


class _Stopped(Exception):
    """Another worker failed: this one stops where it waits."""


class _Mailbox:
    """What is in flight, keyed (kind, micro-batch of the batch, receiving stage copy); a taker waits for it."""

    def __init__(self, timeout: float) -> None:
        self.items: dict[tuple[str, int, int], Any] = {}
        self.cond = threading.Condition()
        self.failed: BaseException | None = None
        self.timeout = timeout

    def put(self, key: tuple[str, int, int], value: Any) -> None:
        with self.cond:
            self.items[key] = value
            self.cond.notify_all()

    def take(self, key: tuple[str, int, int]) -> Any:
        with self.cond:
            if not self.cond.wait_for(lambda: key in self.items or self.failed is not None, self.timeout):
                raise TimeoutError(f"waited {self.timeout}s for {key}: the table's orders do not deliver it")
            if self.failed is not None:
                raise _Stopped
            return self.items.pop(key)

    def fail(self, error: BaseException) -> None:
        with self.cond:
            self.failed = self.failed or error
            self.cond.notify_all()


class TwoWayPipe:
    """DualPipe over ``partitions`` = K devices (K even) and ``chunks`` = M micro-batches (M even, M >= 2K).

    ``executor``: ``"inline"`` runs the table tick by tick on the calling thread; ``"threads"`` gives each
    device a thread that runs its own order, waiting for what it receives (at most ``timeout`` seconds).
    """

    def __init__(self, module: nn.Sequential, partitions: int, chunks: int, balance: Sequence[int] | None = None,
                 checkpoint: object = "except_last", executor: str = "inline", timeout: float | None = 60.0,
                 clock: Clock | None = None) -> None:
        check_sequential(module, "TwoWayPipe")
        check_no_running_averages(module)
        if executor not in ("inline", "threads"):
            raise ValueError(f"executor must be 'inline' or 'threads', got {executor!r}")
        self.executor, self.timeout = executor, timeout
        self.K, self.M = positive_int(partitions, "partitions (K)"), positive_int(chunks, "chunks (M)")
        self.table = check_dualpipe(dualpipe_schedule(self.M, self.K), self.M, self.K)
        self.balance = validate_balance(balance_by_count(len(module), self.K) if balance is None else balance,
                                        len(module))
        if len(self.balance) != self.K:
            raise ValueError(f"balance {self.balance} has {len(self.balance)} chunks but DualPipe on K={self.K} "
                             f"devices cuts the model into K: give {self.K} layer counts")
        device = next(iter(module.parameters()), torch.zeros(())).device
        if device.type != "cpu":
            raise ValueError(f"TwoWayPipe runs on the CPU (the model is on {device}): move the model to the CPU")
        self.chunks = split_module(module, self.balance)
        self.copies = [copy.deepcopy(c) for c in self.chunks]  # before any stage hooks its dropout layers
        self.placement = v_placement(self.K)  # the device of each stage copy
        self.stages = [Stage(s % self.K, part, device, checkpoint, clock)
                       for s, part in enumerate(self.chunks + self.copies)]
        self.memory: list[int] | None = None  # peak activation bytes per device of the last measured step

    def stamps(self) -> list[StageStamps]:
        """The last step's stamps per stage copy (micro-batches numbered in the batch), for a Trace."""
        return [StageStamps(s, stage.device, list(stage.events)) for s, stage in enumerate(self.stages)]

    def forward(self, x: Any) -> Any:
        """Inference: every micro-batch through the original chunks in turn (the sequential model's forward)."""
        tensors.check(x, "the batch")
        xs = microbatch.split(x, self.M)
        for stage in self.stages[:self.K]:
            stage.begin_step(self.M, 0, None, None)
        outs = []
        with torch.no_grad():
            for n, out in enumerate(xs):
                for stage in self.stages[:self.K]:
                    out = stage.forward(n, out)
                outs.append(out)
        return microbatch.join(outs)

    def step(self, x: Any, target: Tensor, loss_fn: LossFn, seed: int | None = None,
             reduction: str = "mean", measure_memory: bool = False) -> Tensor:
        """One training step through the DualPipe table; gradients accumulate into the model's ``.grad``.

        ``measure_memory``: count the activation bytes each device holds (both its stage copies) into
        :attr:`memory`, as :class:`~gpipe_core.GPipe` does."""
        K, M = self.K, self.M
        tensors.check(x, "the batch")
        xs = microbatch.split(x, M)
        targets = list(torch.tensor_split(target, M, dim=0))
        loss = Loss(loss_fn, targets, microbatch.loss_weights(xs, reduction))
        before = self._refresh()
        base = draw_base_seed() if seed is None else seed
        meters = {d: MemoryMeter([p for s, st in enumerate(self.stages) if self.placement[s] == d
                                  for p in st.module.parameters()]) for d in range(K)} if measure_memory else {}
        for s, stage in enumerate(self.stages):
            stage.begin_step(M, base, loss if s % K == K - 1 else None, meters.get(self.placement[s]))
        box, outputs = _Mailbox(self.timeout), {}
        with torch.enable_grad():
            if self.executor == "inline":
                self._walk([c for tick in self.table for c in tick], xs, box, outputs)
            else:
                self._threads(xs, box, outputs)
        if box.failed is not None:
            raise box.failed
        self._merge(before)
        self.memory = [meters[d].peak for d in range(K)] if meters else None
        return torch.stack([outputs[n].detach() for n in range(M)]).sum()

    def _threads(self, xs: list[Any], box: _Mailbox, outputs: dict[int, Tensor]) -> None:
        """One thread per device, each walking its own order of the table."""
        workers = [threading.Thread(target=self._walk, args=(order, xs, box, outputs), daemon=True)
                   for order in device_orders(self.table, self.placement)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    def _walk(self, cells: Sequence[Cell], xs: list[Any], box: _Mailbox, outputs: dict[int, Tensor]) -> None:
        """Run ``cells`` in order; the first failure anywhere stops every walker."""
        with torch.enable_grad():
            for cell in cells:
                for a in actions_of(cell):
                    n, j = (a.stage // self.K) * (self.M // 2) + a.microbatch, a.stage % self.K
                    try:
                        self._run(a, n, xs, box, outputs)
                    except _Stopped:
                        return
                    except BaseException as exc:  # noqa: BLE001 - every failure must reach the caller
                        error = StageError(j, Action(a.kind, n, j), exc)  # the model's stage, the batch's micro-batch
                        error.__cause__ = exc
                        box.fail(error)
                        return

    def _run(self, a: Action, n: int, xs: list[Any], box: _Mailbox, outputs: dict[int, Tensor]) -> None:
        """Action ``a`` of the table for micro-batch ``n`` of the batch, on its stage copy."""
        s, j, stage = a.stage, a.stage % self.K, self.stages[a.stage]
        if a.kind == "F":
            out = stage.forward(n, xs[n] if j == 0 else box.take(("F", n, s)))
            if j == self.K - 1:
                outputs[n] = out
            else:
                box.put(("F", n, s + 1), out)
        elif a.kind == "W":
            stage.backward_weight(n)
        else:
            grad = None if j == self.K - 1 else box.take(("G", n, s))
            grad_in = stage.backward(n, grad) if a.kind == "B" else stage.backward_input(n, grad)
            if j > 0:
                box.put(("G", n, s - 1), grad_in)

    def _refresh(self) -> list[list[Tensor]]:
        """The copies take the originals' parameters and buffers; returns the copies' buffers as they start."""
        with torch.no_grad():
            for original, twin in zip(self.chunks, self.copies):
                for p, q in zip(original.parameters(), twin.parameters()):
                    q.copy_(p)
                    q.grad = None
                for b, c in zip(original.buffers(), twin.buffers()):
                    c.copy_(b)
        return [[b.clone() for b in twin.buffers()] for twin in self.copies]

    def _merge(self, before: list[list[Tensor]]) -> None:
        """The copies' gradients into the originals' ``.grad``; their buffer changes into the originals'."""
        with torch.no_grad():
            for original, twin, start in zip(self.chunks, self.copies, before):
                for p, q in zip(original.parameters(), twin.parameters()):
                    if q.grad is not None:
                        p.grad = q.grad.clone() if p.grad is None else p.grad.add_(q.grad)
                for b, c, c0 in zip(original.buffers(), twin.buffers(), start):
                    b.add_(c - c0)

    def close(self) -> None:
        """Remove the hooks the stages put on the dropout layers."""
        for stage in self.stages:
            stage.rng.remove()

    def __enter__(self) -> TwoWayPipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

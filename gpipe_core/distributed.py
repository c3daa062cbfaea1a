"""The same pipeline on the engine PyTorch maintains: ``torch.distributed.pipelining``.

The course's engine runs K stages as K threads of one process. That stops at
one machine. ``torch.distributed.pipelining`` runs one *process* per stage,
talks between them with point-to-point sends (gloo on CPUs, NCCL on GPUs) and
is launched by ``torchrun``, on one machine or many. This module maps the
course's vocabulary onto it, so a learner keeps their model, balance, M and
schedule name and only changes how the program starts:

=====================  ==========================================================
course engine          torch.distributed.pipelining (what :class:`DistributedPipe` does)
=====================  ==========================================================
``Stage`` j            ``PipelineStage(submodule, stage_index=j, num_stages=K)`` on rank j
``balance``            the slice ``split_module(model, balance)[rank]`` each rank keeps
``schedule="gpipe"``   ``ScheduleGPipe``; ``"1f1b"``: ``Schedule1F1B`` (needs M >= K)
``chunks=M``           ``n_microbatches=M``; torch splits the batch with ``tensor_split``
weights n_i/N          the loss torch calls per micro-batch is weighted by n_i/N and
                       ``scale_grads=False``: torch's default divides every ``.grad``
                       by M *after* backward, which also divides gradient that was
                       already accumulated from an earlier step
``checkpoint``         ``torch.utils.checkpoint`` around the stage's layers
                       (``except_last`` skips the last micro-batch, as in the engine)
dropout seeds          micro-batch i on stage j runs right after
                       ``torch.manual_seed(stage_seed(seed, i, j))``, the rule
                       :func:`~gpipe_core.reference.sequential_step` replays
``Trace``              every rank times its F/R/B actions; :meth:`gather_trace`
                       collects them on rank 0 as one :class:`~gpipe_core.trace.Trace`
``StageError``         a failing action raises ``StageError`` on its rank; torchrun
                       then stops every other rank and exits with the error
=====================  ==========================================================

Two limits come from torch, not from this wrapper: micro-batches must be
equal (torch sizes each receive buffer from the first micro-batch, so the batch
must be a multiple of M; we check it and say so), and a schedule is a name,
not a learner's table (torch's single-stage schedules are fixed classes).

Launch: ``gpipe train --distributed ...`` starts torchrun for you;
``torchrun --nproc-per-node K -m gpipe_core.distributed ...`` takes the same
flags as ``gpipe train``; two machines add ``--nnodes 2 --node-rank R
--rdzv-endpoint HOST:PORT``.
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from .checkpoint import MODES
from .partition import balance_by_count, split_module, validate_balance
from .rng import draw_base_seed, stage_seed
from .runtime import StageError, default_threads
from .schedule import Action
from .stage import LossFn
from .trace import Event, Trace

SCHEDULES: dict[str, type] = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}
LAUNCH_FLAGS = ("distributed", "nnodes", "node_rank", "rdzv_endpoint")  # the launcher's own flags


def default_device(choice: str = "auto") -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` (round-robin over the GPUs) when CUDA is there, else CPU."""
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but CUDA is not available here: use --device cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return torch.device("cuda", local % torch.cuda.device_count())


def init(device: str = "auto", timeout_s: float = 600.0) -> torch.device:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR in the environment).

    NCCL for a CUDA device, gloo for CPU. Returns this rank's device.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError(
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


class _StageModule(nn.Module):
    """A stage's layers as torch's ``PipelineStage`` calls them, with the engine's seeding and recompute rules.

    ``microbatch`` is set by :class:`_TracedStage` around every real forward;
    it is None during torch's one shape-inference forward, which runs plain.
    """

    def __init__(self, layers: nn.Sequential, index: int, checkpoint: str, device: torch.device,
                 clock: Callable[[], float]) -> None:
        super().__init__()
        self.layers = layers
        self.index, self.checkpoint, self.device, self.clock = index, checkpoint, device, clock
        self.microbatch: int | None = None
        self.chunks, self.base_seed = 1, 0
        self.recompute_end: float | None = None
        self.recomputes: list[tuple[int, float, float]] = []
        self._calls: dict[int, int] = {}

    def begin_step(self, chunks: int, base_seed: int) -> None:
        self.chunks, self.base_seed = chunks, base_seed
        self.recomputes.clear()
        self._calls.clear()

    def _recomputes(self, i: int) -> bool:
        return self.checkpoint == "always" or (self.checkpoint == "except_last" and i != self.chunks - 1)

    def forward(self, x: Tensor) -> Tensor:
        i = self.microbatch
        if i is None:
            return self.layers(x)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            torch.manual_seed(stage_seed(self.base_seed, i, self.index))
            if torch.is_grad_enabled() and self._recomputes(i):
                # checkpoint stashes the RNG state it finds (just seeded) and restores it to recompute
                return torch_checkpoint(self._run, x, i, use_reentrant=False)
            return self.layers(x)

    def _run(self, x: Tensor, i: int) -> Tensor:
        self._calls[i] = self._calls.get(i, 0) + 1
        if self._calls[i] == 1:
            return self.layers(x)
        start = self.clock()  # the second call is the recomputation inside backward
        try:
            return self.layers(x)
        finally:  # torch stops a recomputation early (by raising) once it has every tensor backward needs
            self.recompute_end = self.clock()
            self.recomputes.append((i, start, self.recompute_end))


class _TracedStage(PipelineStage):
    """``PipelineStage`` that times every forward and backward and names the failing action."""

    def __init__(self, module: _StageModule, index: int, K: int, device: torch.device,
                 group: dist.ProcessGroup | None) -> None:
        super().__init__(module, index, K, device, group=group)
        self.wrapped = module
        self.events: list[Event] = []

    def forward_one_chunk(self, fwd_chunk_id: int, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None,
                          save_forward_output: bool = True) -> Any:
        self.wrapped.microbatch = fwd_chunk_id
        start = self.wrapped.clock()
        try:
            out = super().forward_one_chunk(fwd_chunk_id, args, kwargs, save_forward_output)
        except Exception as exc:
            raise _stage_error(self.stage_index, Action("F", fwd_chunk_id, self.stage_index), exc) from exc
        finally:
            self.wrapped.microbatch = None
        self.events.append(Event(self.stage_index, fwd_chunk_id, "F", start, self.wrapped.clock()))
        return out

    def backward_one_chunk(self, bwd_chunk_id: int, loss: Any = None, full_backward: bool = True,
                           last_backward: bool = False) -> None:
        self.wrapped.recompute_end = None
        start = self.wrapped.clock()
        try:
            super().backward_one_chunk(bwd_chunk_id, loss=loss, full_backward=full_backward,
                                       last_backward=last_backward)
        except Exception as exc:
            raise _stage_error(self.stage_index, Action("B", bwd_chunk_id, self.stage_index), exc) from exc
        b_start = self.wrapped.recompute_end if self.wrapped.recompute_end is not None else start
        self.events.append(Event(self.stage_index, bwd_chunk_id, "B", b_start, self.wrapped.clock()))


def _stage_error(stage: int, action: Action, exc: Exception) -> StageError:
    # torch wraps a forward's exception in a RuntimeError listing the arguments; name the original
    cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
    return StageError(stage, action, cause)


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
        if not isinstance(module, nn.Sequential):
            raise TypeError(f"DistributedPipe needs an nn.Sequential, got {type(module).__name__}: "
                            "wrap the layers in order, e.g. nn.Sequential(*layers)")
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
        if not isinstance(chunks, int) or chunks < 1:
            raise ValueError(f"chunks (M) must be a positive integer, got {chunks!r}")
        if schedule == "1f1b" and chunks < self.K:
            raise ValueError(f"torch's Schedule1F1B needs M >= K: got M={chunks} for K={self.K}; "
                             f"use --micro-batches {self.K} or more, or --schedule gpipe")
        self.chunks, self.schedule_name, self.checkpoint = chunks, schedule, checkpoint
        self.device = default_device() if device is None else torch.device(device)
        self.module = split_module(module, self.balance)[self.rank].to(self.device)
        self._template = module if self.rank == 0 else None  # rank 0 rebuilds the whole model from it
        self._wrapped = _StageModule(self.module, self.rank, checkpoint, self.device, self._clock)
        self.stage = _TracedStage(self._wrapped, self.rank, self.K, self.device, group)
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


# --------------------------------------------------------------------------- gpipe train, distributed


def measure(pipe: DistributedPipe, model: nn.Sequential, x: Tensor, y: Tensor, loss_fn: LossFn,
            losses: list[float], elapsed: float, trace: Trace | None, repeats: int = 3) -> Any:
    """Collective: the ``gpipe train`` report on rank 0 (None elsewhere), as :func:`gpipe_core.report.measure`.

    Throughput, the speedup over the plain model timed on rank 0, the measured
    bubble from the gathered trace, and the largest gradient difference of one
    more step against :func:`~gpipe_core.reference.sequential_step`. Activation
    memory per stage is not measured here (torch keeps the activations itself).
    """
    from .experiments import median_time, plain_step, with_threads
    from .reference import gradients, sequential_step
    from .report import Report
    from .theory import bubble_fraction

    for p in pipe.module.parameters():
        p.grad = None
    pipe.step(x, y, loss_fn, seed=1234)
    whole = pipe.gather_model()
    if whole is None:
        dist.barrier(group=pipe.group)  # rank 0 times the plain model meanwhile
        return None
    report = Report(losses=losses, samples_per_s=len(losses) * x.shape[0] / elapsed)
    report.bubble_measured = trace.bubble() if trace else 0.0
    report.bubble_theory = bubble_fraction(pipe.K, pipe.chunks)
    ref = copy.deepcopy(whole).to(pipe.device)
    xd, yd = x.to(pipe.device), y.to(pipe.device)
    ref.zero_grad(set_to_none=True)
    sequential_step(ref, xd, yd, loss_fn, balance=pipe.balance, chunks=pipe.chunks, seed=1234)
    diffs = [(a - b.cpu()).abs().max().item() for a, b in zip(gradients(whole), gradients(ref))
             if a is not None and b is not None]
    report.max_grad_diff = max(diffs, default=0.0)
    t_seq, _ = median_time(with_threads(os.cpu_count() or 1, lambda: plain_step(ref, xd, yd, loss_fn)), repeats)
    report.sequential_samples_per_s = x.shape[0] / t_seq
    dist.barrier(group=pipe.group)
    return report


def report_text(report: Any, K: int, M: int) -> str:
    """The single-process report's text, with the one line the distributed run cannot fill said plainly."""
    text = report.text(K, M)
    return text.replace("activation memory per stage (measured vs law):",
                        "activation memory per stage: not measured distributed (torch's PipelineStage keeps the "
                        "activations; gpipe train without --distributed measures them against the law)")


def train(args: argparse.Namespace) -> int:
    """``gpipe train`` on one process per stage; every rank runs this, rank 0 prints."""
    from tqdm import tqdm

    from .models import residual_mlp, teacher_task

    device = init(args.device)
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        if world != args.partitions:
            raise ValueError(f"--partitions {args.partitions} but torchrun started {world} processes: "
                             f"one process per stage, e.g. torchrun --nproc-per-node {args.partitions}")
        torch.manual_seed(args.seed)
        model = residual_mlp(args.layers, args.hidden_dim, classes=10, dropout=args.dropout)
        x, y = teacher_task(args.batch_size, args.hidden_dim, classes=10, seed=args.seed)
        pipe = DistributedPipe(model, chunks=args.micro_batches,
                               schedule=args.schedule, checkpoint=args.checkpoint, device=device)
        loss_fn = nn.functional.cross_entropy
        optimizer = torch.optim.Adam(pipe.module.parameters(), lr=args.lr)
        if rank == 0:
            backend = dist.get_backend()
            print(f"gpipe train --distributed: {args.layers} layers of width {args.hidden_dim}, balance "
                  f"{pipe.balance} on {world} processes ({backend}, {device.type}), M={args.micro_batches}, "
                  f"batch {args.batch_size}, checkpoint={args.checkpoint}, schedule={args.schedule} "
                  f"(torch.distributed.pipelining.{SCHEDULES[args.schedule].__name__})", flush=True)
        losses = []
        dist.barrier()
        start = time.perf_counter()
        for _ in tqdm(range(args.steps), desc="training", unit="step", file=sys.stderr,
                      disable=args.quiet or rank != 0):
            optimizer.zero_grad(set_to_none=True)
            losses.append(pipe.step(x, y, loss_fn).item())
            optimizer.step()
        elapsed = time.perf_counter() - start
        trace = pipe.gather_trace()
        report = measure(pipe, model, x, y, loss_fn, losses, elapsed, trace)
        if rank == 0:
            print(report_text(report, pipe.K, pipe.chunks))
            if args.gantt and trace is not None:
                import matplotlib

                matplotlib.use("Agg")
                ax = trace.gantt(title=f"K={pipe.K} processes, M={pipe.chunks}: measured step "
                                       f"(torch.distributed.pipelining, {args.schedule})")
                ax.figure.savefig(args.gantt, dpi=120, bbox_inches="tight")
                print(f"Gantt chart of the last step written to {args.gantt}")
            if len(losses) > 1 and not losses[-1] < losses[0]:
                print("warning: the loss did not fall; try more --steps or a smaller --lr", file=sys.stderr)
    finally:
        dist.destroy_process_group()
    return 0


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The ``gpipe train`` flags in ``args`` as command-line words, minus the launcher's own flags.

    Every train option's destination ``foo_bar`` is the flag ``--foo-bar``;
    a test parses the result back and checks nothing was lost.
    """
    words: list[str] = []
    for key, value in sorted(vars(args).items()):
        if key in ("command", "func", *LAUNCH_FLAGS) or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    return words


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """The torchrun command line ``gpipe train --distributed`` runs on this machine."""
    K, nnodes = args.partitions, args.nnodes
    if nnodes < 1 or K % nnodes:
        raise ValueError(f"--partitions {K} stages do not divide over --nnodes {nnodes} machines: "
                         "use a multiple of the machine count")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={K // nnodes}"]
    if nnodes == 1 and not args.rdzv_endpoint:
        cmd.append("--standalone")  # a free localhost port, picked by torchrun
    else:
        if not args.rdzv_endpoint:
            raise ValueError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT, the address of the machine "
                             "with --node-rank 0 (the same value on every machine)")
        if not 0 <= args.node_rank < nnodes:
            raise ValueError(f"--node-rank {args.node_rank} is outside 0..{nnodes - 1}")
        # static rendezvous: node r runs stages r*K/nnodes ... (r+1)*K/nnodes - 1, in order
        cmd += [f"--nnodes={nnodes}", f"--node-rank={args.node_rank}", f"--rdzv-endpoint={args.rdzv_endpoint}"]
    return cmd + ["-m", "gpipe_core.distributed", *worker_argv(args)]


def launch(args: argparse.Namespace) -> int:
    """``gpipe train --distributed``: run torchrun for this machine's share of the stages; return its exit code."""
    cmd = torchrun_command(args)
    proc = subprocess.Popen(cmd)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)  # torchrun stops its workers on SIGINT
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 130
    if code != 0:
        print(f"gpipe: the distributed run failed (torchrun exit code {code}); the failing rank's error is above",
              file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``torchrun --nproc-per-node K -m gpipe_core.distributed [gpipe train flags]``."""
    from .cli import build_parser

    args = build_parser().parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    if args.distributed:
        raise SystemExit("gpipe_core.distributed already runs under torchrun: drop --distributed")
    try:
        return train(args)
    except (ValueError, TypeError) as exc:  # a setting that cannot work: say which, as `gpipe train` does
        print(f"gpipe (rank {os.environ.get('RANK', '?')}): {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from torch.distributed.elastic.multiprocessing.errors import record

    raise SystemExit(record(main)())

"""`gpipe train --distributed`: start torchrun; and the job each of its workers runs.

The launcher half (:func:`launch`, :func:`torchrun_command`, :func:`worker_argv`)
turns the ``gpipe train`` flags into a torchrun command line. The worker half
(:func:`train`, :func:`measure`) is ``gpipe train`` itself on one process per
stage: the same task, loop and report as the thread engine's
(:mod:`gpipe_core.workloads.training`, :mod:`gpipe_core.course.report`), with the collective
parts in between. The worker's entry point is ``gpipe_core/distributed/__main__.py``,
which nothing imports, so this module never needs the command-line module.
"""

from __future__ import annotations

import argparse
import copy
import signal
import subprocess
import sys
from collections.abc import Callable

import torch
import torch.distributed as dist

from ..course.experiments import interleaved_times, plain_step
from ..course.report import Report, max_grad_diff, start_report, time_speed
from ..engine.reference import sequential_step
from ..engine.trace import Trace
from ..workloads.training import Run, Task, loss_warning, make_task, run_steps, save_gantt
from .group import init
from .pipe import SCHEDULES, DistributedPipe

LAUNCH_FLAGS = ("distributed", "nnodes", "node_rank", "rdzv_endpoint")  # the launcher's own flags


def measure(pipe: DistributedPipe, task: Task, run: Run, trace: Trace | None, schedule: str,
            repeats: int = 3) -> Report | None:
    """Collective: the ``gpipe train`` report on rank 0 (None elsewhere), as :func:`gpipe_core.course.report.measure`.

    The largest gradient difference of one more step against
    :func:`~gpipe_core.engine.reference.sequential_step` (on rank 0, from the gathered
    model), the bubble of the gathered trace, and one pipelined step timed on
    rank 0 beside the same micro-batches through one stage with one process's
    threads and beside the plain model on every core, round-robin. Activation
    memory per stage is not measured here: torch's ``PipelineStage`` holds the
    activations.
    """
    x, y = run.last if run.last is not None else next(task.batches)
    for p in pipe.module.parameters():
        p.grad = None
    pipe.step(x, y, task.loss_fn, seed=1234)
    whole = pipe.gather_model()
    report, ref = None, None
    xd, yd = x.to(pipe.device), y.to(pipe.device)
    if whole is not None:  # rank 0
        report = start_report(run, task, pipe.K, pipe.chunks, schedule)
        report.memory_note = ("not measured distributed (torch's PipelineStage keeps the activations; "
                              "gpipe train without --distributed measures them against the law)")
        report.bubble_measured = trace.bubble() if trace else 0.0
        report.threads_per_stage = torch.get_num_threads()
        report.separate_devices = pipe.device.type == "cuda"
        ref = copy.deepcopy(whole).to(pipe.device)
        ref.zero_grad(set_to_none=True)
        sequential_step(ref, xd, yd, task.loss_fn, balance=pipe.balance, chunks=pipe.chunks, seed=1234)
        report.max_grad_diff = max_grad_diff(whole, ref)

    def rank0(fn: Callable[[], object]) -> Callable[[], None]:  # rank 0 works while the others wait
        return lambda: None if ref is None else fn()

    one_stage = rank0(lambda: sequential_step(ref, xd, yd, task.loss_fn, chunks=pipe.chunks))
    plain = rank0(lambda: plain_step(ref, xd, yd, task.loss_fn))
    if report is not None:
        time_speed(report, lambda: pipe.step(x, y, task.loss_fn, seed=0), one_stage, plain, repeats)
    else:  # the same calls in the same order: pipe.step is collective
        interleaved_times({"pipe": lambda: pipe.step(x, y, task.loss_fn, seed=0), "one": one_stage,
                           "plain": plain}, repeats)
    return report


def train(args: argparse.Namespace) -> int:
    """``gpipe train`` on one process per stage; every rank runs this, rank 0 prints."""
    device = init(args.device)
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        if world != args.partitions:
            raise ValueError(f"--partitions {args.partitions} but torchrun started {world} processes: "
                             f"one process per stage, e.g. torchrun --nproc-per-node {args.partitions}")
        if args.deferred_batch_norm:
            raise ValueError("--deferred-batch-norm runs on the thread engine only: drop --distributed or the flag")
        task = make_task(args)
        pipe = DistributedPipe(task.model, chunks=args.micro_batches,
                               schedule=args.schedule, checkpoint=args.checkpoint, device=device)
        optimizer = torch.optim.Adam(pipe.module.parameters(), lr=args.lr)
        if rank == 0:
            print(f"gpipe train --distributed: {task.description}, balance {pipe.balance} on {world} processes "
                  f"({dist.get_backend()}, {device.type}), M={args.micro_batches}, batch {args.batch_size}, "
                  f"checkpoint={args.checkpoint}, schedule={args.schedule} "
                  f"(torch.distributed.pipelining.{SCHEDULES[args.schedule].__name__})", flush=True)
        dist.barrier()
        run = run_steps(lambda x, y: pipe.step(x, y, task.loss_fn), optimizer, task, args.steps,
                        progress=not args.quiet and rank == 0)
        trace = pipe.gather_trace()
        report = measure(pipe, task, run, trace, args.schedule)
        if report is not None:
            print(report.text(pipe.K, pipe.chunks))
            if args.gantt and trace is not None:
                save_gantt(trace, args.gantt, f"K={pipe.K} processes, M={pipe.chunks}: measured step "
                                              f"(torch.distributed.pipelining, {args.schedule})")
                print(f"Gantt chart of the last step written to {args.gantt}")
            if args.trace and trace is not None:
                from ..sim.perfetto import chrome_trace, write

                write(chrome_trace(trace), args.trace)
                print(f"Chrome/Perfetto trace of the last step written to {args.trace}")
            warning = loss_warning(run.losses)
            if warning:
                print(warning, file=sys.stderr)
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

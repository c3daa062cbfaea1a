"""`gpipe train --distributed` and `torchrun -m gpipe_core.distributed`: start, train, report."""

from __future__ import annotations

import argparse
import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..stage import LossFn
from ..trace import Trace
from .group import NoTorchrun, init
from .pipe import SCHEDULES, DistributedPipe

LAUNCH_FLAGS = ("distributed", "nnodes", "node_rank", "rdzv_endpoint")  # the launcher's own flags


def measure(pipe: DistributedPipe, model: nn.Sequential, x: Tensor, y: Tensor, loss_fn: LossFn,
            losses: list[float], elapsed: float, trace: Trace | None, repeats: int = 3) -> Any:
    """Collective: the ``gpipe train`` report on rank 0 (None elsewhere), as :func:`gpipe_core.report.measure`.

    The largest gradient difference of one more step against
    :func:`~gpipe_core.reference.sequential_step` (on rank 0, from the gathered
    model), the bubble of the gathered trace, and one pipelined step timed on
    rank 0 beside the plain model's step, round-robin. Activation memory per
    stage is not measured here: torch's ``PipelineStage`` holds the activations.
    """
    import statistics

    from ..experiments import interleaved_times, plain_step, with_threads
    from ..reference import gradients, sequential_step
    from ..report import Report
    from ..theory import bubble_fraction

    for p in pipe.module.parameters():
        p.grad = None
    pipe.step(x, y, loss_fn, seed=1234)
    whole = pipe.gather_model()
    report, ref = None, None
    if whole is not None:  # rank 0
        report = Report(losses=losses, samples_per_s=len(losses) * x.shape[0] / elapsed,
                        memory_note="not measured distributed (torch's PipelineStage keeps the activations; "
                                    "gpipe train without --distributed measures them against the law)")
        report.bubble_measured = trace.bubble() if trace else 0.0
        report.bubble_theory = bubble_fraction(pipe.chunks, pipe.K)
        ref = copy.deepcopy(whole).to(pipe.device)
        ref.zero_grad(set_to_none=True)
        sequential_step(ref, x.to(pipe.device), y.to(pipe.device), loss_fn, balance=pipe.balance,
                        chunks=pipe.chunks, seed=1234)
        diffs = [(a - b.cpu()).abs().max().item() for a, b in zip(gradients(whole), gradients(ref))
                 if a is not None and b is not None]
        report.max_grad_diff = max(diffs, default=0.0)

    def sequential() -> None:  # rank 0 runs the plain model while the others wait for the next step
        if ref is not None:
            plain_step(ref, x.to(pipe.device), y.to(pipe.device), loss_fn)

    times = interleaved_times({"pipe": lambda: pipe.step(x, y, loss_fn, seed=0),
                               "sequential": with_threads(os.cpu_count() or 1, sequential)}, repeats)
    if report is not None:
        report.step_s = statistics.median(times["pipe"])
        report.sequential_s = statistics.median(times["sequential"])
    return report


def train(args: argparse.Namespace) -> int:
    """``gpipe train`` on one process per stage; every rank runs this, rank 0 prints."""
    from tqdm import tqdm

    from ..models import residual_mlp, teacher_task

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
            print(report.text(pipe.K, pipe.chunks))
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
    from ..cli import build_parser

    args = build_parser().parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    if args.distributed:
        raise SystemExit("gpipe_core.distributed already runs under torchrun: drop --distributed")
    try:
        return train(args)
    except (ValueError, TypeError, NoTorchrun) as exc:  # a setting that cannot work: say which, as `gpipe train` does
        rank = os.environ.get("RANK")
        print(f"gpipe (rank {rank}): {exc}" if rank else f"gpipe: {exc}", file=sys.stderr)
        return 2

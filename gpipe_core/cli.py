"""The ``gpipe`` command: train, sweep, schedule.

``gpipe train`` is the module's main job: it trains a deep model (or, with
``--model gpt``, a small language model) through the pipeline and reports what
was measured (loss, throughput, speedup two honest ways, bubble, activation
memory, gradient agreement). The model, data and training loop live in
:mod:`gpipe_core.workloads.training`, shared with the distributed worker. ``gpipe sweep`` runs
the sensitivity-to-M experiment, ``gpipe schedule`` prints a schedule table and
what the simulator gives it: step, bubble and, beside them, each device's busy
and idle time and peak memory, under F:I:W costs and a link between devices
of your choice, optionally as a Chrome/Perfetto trace.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

import torch
from torch import nn

from .schedules.validation import render
from .schedules.zoo import BUILTINS, TWO_WAY
from .workloads.training import MODELS


def _devices(choice: str) -> str | None:
    """``--device`` as GPipe's ``devices=``: one device for every stage, or None (CUDA round-robin, else CPU)."""
    if choice == "cpu":
        return "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("gpipe: --device cuda asked for, but CUDA is not available here: use --device cpu")
        return None
    return None  # auto


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 1,2,4,8")
    return values


def cmd_train(args: argparse.Namespace) -> int:
    if args.distributed:  # one process per stage on torch.distributed.pipelining, started by torchrun
        from .distributed.launch import launch

        return launch(args)
    from .course.report import measure
    from .engine.common import default_threads
    from .engine.pipe import GPipe
    from .workloads.training import loss_warning, make_task, run_steps, save_gantt

    task = make_task(args)
    threads = default_threads(args.partitions)
    pipe = GPipe(task.model, partitions=args.partitions, chunks=args.micro_batches,
                 devices=_devices(args.device), checkpoint=args.checkpoint,
                 schedule=args.schedule, deferred_batch_norm=args.deferred_batch_norm, threads_per_stage=threads)
    optimizer = torch.optim.Adam(task.model.parameters(), lr=args.lr)
    print(f"gpipe train: {task.description}, balance {pipe.balance} on {[str(d) for d in pipe.devices]}, "
          f"M={args.micro_batches}, batch {args.batch_size}, checkpoint={args.checkpoint}, schedule={args.schedule}"
          + (", deferred BatchNorm" if args.deferred_batch_norm else ""))
    with pipe:
        run = run_steps(lambda x, y: pipe.step(x, y, task.loss_fn), optimizer, task, args.steps,
                        progress=not args.quiet)
        report = measure(pipe, task, run, threads, schedule=args.schedule)
        print(report.text(pipe.K, pipe.chunks))
        if args.gantt:
            save_gantt(pipe.trace, args.gantt, f"K={pipe.K}, M={pipe.chunks}: measured step")
            print(f"Gantt chart of the last step written to {args.gantt}")
        if args.trace:
            from .sim.perfetto import chrome_trace, write

            write(chrome_trace(pipe.trace), args.trace)
            print(f"Chrome/Perfetto trace of the last step written to {args.trace} (open it in ui.perfetto.dev)")
    warning = loss_warning(run.losses)
    if warning:
        print(warning, file=sys.stderr)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .course.experiments import plot_sweep, sweep_micro_batches
    from .workloads.models import mlp

    torch.manual_seed(args.seed)
    model = mlp(args.layers, args.hidden_dim)
    x = torch.randn(args.batch_size, args.hidden_dim)
    y = torch.randn(args.batch_size, args.hidden_dim)
    too_big = [m for m in args.micro_batches if m > args.batch_size]
    if too_big:
        raise SystemExit(f"gpipe sweep: M={too_big} exceed the batch of {args.batch_size}: "
                         "drop them or raise --batch-size")
    print(f"{'M':>4} {'pipeline s':>11} {'one-stage s':>12} {'speedup':>8} {'ideal':>6} "
          f"{'bubble':>7} {'theory':>7}")

    def show(r) -> None:  # noqa: ANN001
        print(f"{r.M:>4} {r.pipeline_s:>11.4f} {r.sequential_s:>12.4f} {r.speedup:>8.2f} {r.ideal:>6.2f} "
              f"{r.bubble_measured:>7.3f} {r.bubble_theory:>7.3f}", flush=True)

    rows = sweep_micro_batches(model, x, y, nn.functional.mse_loss, args.partitions, args.micro_batches,
                               repeats=args.repeats, threads_per_stage=args.threads_per_stage, progress=show)
    if args.plot:
        plot_sweep(rows, args.partitions, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def _ratio(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(":"))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected F:I:W, three times >= 0 such as 1:1:1 or 1:1.5:0.5, got {text!r}")
    return values  # type: ignore[return-value]


def cmd_schedule(args: argparse.Namespace) -> int:
    from .sim.comm import Comm
    from .sim.perfetto import table_trace, write
    from .sim.simulate import Costs, peak_memory, simulate

    if args.schedule in TWO_WAY:
        return _two_way_schedule(args)
    builtin, K, M = BUILTINS[args.schedule], args.partitions, args.micro_batches
    table, placement = builtin.build(M, K), builtin.placement(K)
    f, i, w = args.costs
    link = args.latency or args.message_bytes or args.blocking_sends
    comm = Comm(args.latency, args.bandwidth, args.message_bytes, overlap=not args.blocking_sends) if link else None
    costs = Costs(forward=f, backward=i + w, input_grad=i, weight_grad=w, overlap=args.overlap, comm=comm)
    print(render(table, len(placement), placement))
    trace = simulate(table, K, costs, placement=placement)
    held = [int(h) for h in peak_memory(table, K, costs=costs, placement=placement)]
    said = "unit costs (F = I = W = 1, B = 2)" if (f, i, w) == (1, 1, 1) and comm is None and args.overlap is None \
        else f"costs F:I:W = {f:g}:{i:g}:{w:g} (B = {i + w:g}" + \
        (f", F&B = {args.overlap:g}" if args.overlap is not None else "") + ")" + \
        (f", each hop between devices {args.latency:g} + {args.message_bytes:g} B / {args.bandwidth:g} B per unit, "
         + ("blocking sends" if args.blocking_sends else "sends beside compute") if comm else "")
    print(f"{len(table)} ticks; {said}: step {trace.span:g}, bubble {trace.bubble():.3f}, "
          f"peak micro-batches held per device {held}" + (f" (chunks of 1/{builtin.virtual} stage)"
                                                          if builtin.virtual > 1 else ""))
    for d in range(K):
        print(f"  device {d} | busy {trace.busy(d):g}, idle {trace.span - trace.busy(d):g}, peak held {held[d]}")
    if args.trace:
        write(table_trace(table, K, costs, placement=placement, name=f"{args.schedule} K={K} M={M}"), args.trace)
        print(f"Chrome/Perfetto trace written to {args.trace} (open it in ui.perfetto.dev)")
    return 0


def _two_way_schedule(args: argparse.Namespace) -> int:
    """DualPipe's table, step, bubble and memory, timed by :mod:`~gpipe_core.schedules.bidirectional` (chain cut)."""
    from .schedules.bidirectional import measure, timeline
    from .sim.perfetto import chrome_trace, write

    if args.latency or args.message_bytes or args.blocking_sends:
        raise ValueError("the link between devices is not simulated for DualPipe's two-way table (its chain is cut "
                         "between stage copies K-1 and K): drop --latency, --message-bytes and --blocking-sends")
    K, M, (f, i, w) = args.partitions, args.micro_batches, args.costs
    build = TWO_WAY[args.schedule]
    table = build.build(M, K)
    print(render(table, K, build.placement(K)))
    print(f"stage copies 0..{K - 1} carry micro-batches 0..{M // 2 - 1} down from device 0, copies {K}..{2 * K - 1} "
          f"micro-batches {M // 2}..{M - 1} (numbered 0..{M // 2 - 1} above) up from device {K - 1}")
    run = measure(table, K, f, i + w, i, w, args.overlap)
    trace = timeline(table, K, f, i + w, i, w, args.overlap)
    said = "unit costs (F = I = W = 1, B = 2)" if (f, i, w) == (1, 1, 1) and args.overlap is None \
        else f"costs F:I:W = {f:g}:{i:g}:{w:g} (B = {i + w:g}" + \
        (f", F&B = {args.overlap:g}" if args.overlap is not None else "") + ")"
    print(f"{len(table)} ticks; {said}: step {run.step:g}, bubble {trace.bubble():.3f}, peak activations held per "
          f"device {run.held} (stage copies, each 1/K of the model; parameters: two chunks per device)")
    for d in range(K):
        print(f"  device {d} | busy {trace.busy(d):g}, idle {trace.span - trace.busy(d):g}, peak held {run.held[d]}")
    if args.trace:
        write(chrome_trace(trace, name=f"{args.schedule} K={K} M={M}"), args.trace)
        print(f"Chrome/Perfetto trace written to {args.trace} (open it in ui.perfetto.dev)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpipe", description="GPipe pipeline parallelism: train, sweep, schedule")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--partitions", "-K", type=int, default=2, help="pipeline stages K (default 2)")
    common.add_argument("--seed", type=int, default=0)
    one_way = argparse.ArgumentParser(add_help=False)  # train and sweep: the runtime's one-way schedules
    one_way.add_argument("--schedule", choices=sorted(BUILTINS), default="gpipe")

    train = sub.add_parser("train", parents=[common, one_way], help="train a model through the pipeline and report")
    train.add_argument("--model", choices=MODELS, default="mlp",
                       help="mlp: residual MLP on a teacher's labels; bn: the same with BatchNorm; "
                            "gpt: a small decoder on the shipped Shakespeare text (default mlp)")
    train.add_argument("--micro-batches", "-M", type=int, default=8, help="micro-batches M (default 8)")
    train.add_argument("--layers", type=int, help="layers L, head included (mlp, bn: 16) or decoder blocks (gpt: 4)")
    train.add_argument("--hidden-dim", type=int, help="width (mlp, bn: 256; gpt: 128)")
    train.add_argument("--batch-size", type=int, help="samples or sequences per step (mlp, bn: 256; gpt: 32)")
    train.add_argument("--heads", type=int, default=4, help="gpt: attention heads (default 4)")
    train.add_argument("--context", type=int, default=64, help="gpt: tokens per sequence (default 64)")
    train.add_argument("--checkpoint", choices=["always", "except_last", "never"], default="except_last")
    train.add_argument("--deferred-batch-norm", action="store_true",
                       help="BatchNorm running statistics from the whole batch, once per step (see --model bn)")
    train.add_argument("--steps", type=int, default=10)
    train.add_argument("--lr", type=float, help="Adam learning rate (mlp, bn: 1e-3; gpt: 3e-3)")
    train.add_argument("--dropout", type=float, default=0.1)
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    train.add_argument("--gantt", metavar="FILE.png", help="draw the last step's measured Gantt chart")
    train.add_argument("--trace", metavar="FILE.json", help="write the last step as a Chrome/Perfetto trace")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    multi = train.add_argument_group("distributed (torch.distributed.pipelining, one process per stage)")
    multi.add_argument("--distributed", action="store_true", help="launch K processes with torchrun instead of "
                       "K threads (gloo on CPU, NCCL on GPUs); see gpipe_core/distributed/")
    multi.add_argument("--nnodes", type=int, default=1, help="machines taking part (torchrun --nnodes)")
    multi.add_argument("--node-rank", type=int, default=0, help="this machine's index, 0 on the one at --rdzv-endpoint")
    multi.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="machine 0's address, the same on every machine")
    train.set_defaults(func=cmd_train)

    sweep = sub.add_parser("sweep", parents=[common, one_way], help="speedup and bubble against M")
    sweep.add_argument("--micro-batches", "-M", type=_int_list, default=[1, 2, 4, 8, 16, 32])
    sweep.add_argument("--layers", type=int, default=24)
    sweep.add_argument("--hidden-dim", type=int, default=512)
    sweep.add_argument("--batch-size", type=int, default=256)
    sweep.add_argument("--repeats", type=int, default=3)
    sweep.add_argument("--threads-per-stage", type=int, default=1)
    sweep.add_argument("--plot", metavar="FILE.png")
    sweep.set_defaults(func=cmd_sweep)

    sched = sub.add_parser("schedule", parents=[common], help="print a schedule as a clock-tick table")
    sched.add_argument("--schedule", choices=sorted(BUILTINS) + sorted(TWO_WAY), default="gpipe",
                       help="dualpipe: two directions, K and M even, M >= 2K (no link simulated)")
    sched.add_argument("--micro-batches", "-M", type=int, default=4)
    sched.add_argument("--costs", type=_ratio, default=(1.0, 1.0, 1.0), metavar="F:I:W",
                       help="times of one stage's forward, input gradient, weight gradient (B = I + W); default 1:1:1")
    sched.add_argument("--overlap", type=float, metavar="F&B", help="time of an overlapped forward-and-backward "
                       "cell (DualPipeV); default: F + B, no overlap gained")
    link = sched.add_argument_group("communication: each hop between devices costs latency + bytes / bandwidth; "
                                    "a hop inside one device is free")
    link.add_argument("--latency", type=float, default=0.0, help="time units per hop (default 0)")
    link.add_argument("--bandwidth", type=float, default=math.inf, help="bytes per time unit (default: no limit)")
    link.add_argument("--message-bytes", type=float, default=0.0, help="bytes one micro-batch sends across a stage "
                      "boundary, forward or back (default 0)")
    link.add_argument("--blocking-sends", action="store_true", help="the sender waits for each send (default: "
                      "sends run beside compute)")
    sched.add_argument("--trace", metavar="FILE.json", help="write the simulated step as a Chrome/Perfetto trace")
    sched.set_defaults(func=cmd_schedule)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:
        print(f"gpipe: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

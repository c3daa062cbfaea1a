"""What ``gpipe train`` trains and the loop that trains it, shared by the thread and the process engines.

``gpipe train`` runs on the course's engine (K threads, :class:`~gpipe_core.GPipe`)
or, with ``--distributed``, on ``torch.distributed.pipelining`` (K processes).
Both build the same :class:`Task` from the command line and run the same
:func:`run_steps` loop; only the pipe and the report's collective parts
differ. Keeping the loop here (not in ``cli.py``) means the distributed worker
needs nothing from the command-line module but its parser.

Three tasks: ``mlp`` (a deep residual MLP on a teacher's labels, the default),
``bn`` (the same with BatchNorm, for deferred BatchNorm) and ``gpt`` (a small
decoder learning the shipped Shakespeare text byte by byte).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat

import torch
from torch import Tensor, nn

from ..engine.common import LossFn

MODELS = ("mlp", "bn", "gpt")
# per-model defaults of the size flags (None on the command line means "the model's default")
DEFAULTS = {
    "mlp": {"layers": 16, "hidden_dim": 256, "batch_size": 256, "lr": 1e-3},
    "bn": {"layers": 16, "hidden_dim": 256, "batch_size": 256, "lr": 1e-3},
    "gpt": {"layers": 4, "hidden_dim": 128, "batch_size": 32, "lr": 3e-3},
}


@dataclass
class Task:
    """A model, its data and its loss: everything the loop needs that is not the pipe."""

    model: nn.Sequential
    loss_fn: LossFn
    batches: Iterator[tuple[Tensor, Tensor]]  # one (inputs, targets) per step
    unit: str  # what throughput counts: "samples" or "tokens"
    description: str  # one line for the run's header
    uniform_layers: bool = True  # whether the memory law's "bytes per layer" applies (equal layers)

    def items(self, x: Tensor) -> int:
        """Samples or tokens in a batch."""
        return x.numel() if self.unit == "tokens" else x.shape[0]


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the size flags left at None with the chosen model's defaults (in place; returned)."""
    for key, value in DEFAULTS[args.model].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def make_task(args: argparse.Namespace) -> Task:
    """The model, data and loss that the ``gpipe train`` flags in ``args`` describe (seeded by ``--seed``)."""
    resolve_defaults(args)
    torch.manual_seed(args.seed)
    if args.model == "gpt":
        from .gpt import gpt, lm_loss, text_batches
        from .tokenizer import corpus, encode

        model = gpt(args.layers, args.hidden_dim, args.heads, args.context, dropout=args.dropout)
        tokens = encode(corpus())
        return Task(model, lm_loss, text_batches(tokens, args.batch_size, args.context, seed=args.seed), "tokens",
                    f"GPT decoder of {args.layers} blocks (width {args.hidden_dim}, {args.heads} heads, context "
                    f"{args.context}) on {tokens.numel() / 1e3:.0f} KB of Shakespeare, byte tokens",
                    uniform_layers=False)
    from .models import bn_mlp, residual_mlp, teacher_task

    build = bn_mlp if args.model == "bn" else residual_mlp
    model = build(args.layers, args.hidden_dim, classes=10, dropout=args.dropout)
    x, y = teacher_task(args.batch_size, args.hidden_dim, classes=10, seed=args.seed)
    kind = "BatchNorm MLP" if args.model == "bn" else "residual MLP"
    return Task(model, nn.functional.cross_entropy, repeat((x, y)), "samples",
                f"{kind} of {args.layers} layers, width {args.hidden_dim}", uniform_layers=args.model == "mlp")


@dataclass
class Run:
    """What a training loop leaves: the loss of every step, the time it took, the last batch."""

    losses: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    items: int = 0  # samples or tokens processed
    last: tuple[Tensor, Tensor] | None = None

    @property
    def throughput(self) -> float:
        return self.items / self.elapsed if self.elapsed else 0.0


def run_steps(step: Callable[[Tensor, Tensor], Tensor], optimizer: torch.optim.Optimizer, task: Task, steps: int,
              progress: bool = True) -> Run:
    """``steps`` optimizer steps, each ``step(x, y)`` (forward + backward, returns the loss) on the next batch.

    With ``progress`` a bar on stderr shows the loss and the throughput so far.
    """
    from tqdm import tqdm

    run = Run()
    bar = tqdm(range(steps), desc="training", unit="step", file=sys.stderr, disable=not progress)
    start = time.perf_counter()
    for _ in bar:
        x, y = next(task.batches)
        optimizer.zero_grad(set_to_none=True)
        run.losses.append(float(step(x, y)))
        optimizer.step()
        run.items += task.items(x)
        run.elapsed = time.perf_counter() - start
        bar.set_postfix_str(f"loss {run.losses[-1]:.4f}, {run.throughput:,.0f} {task.unit}/s")
    run.last = (x, y) if steps else None
    return run


def loss_warning(losses: list[float]) -> str | None:
    """A hint when training did not make progress, else None."""
    if len(losses) > 1 and not losses[-1] < losses[0]:
        return "warning: the loss did not fall; try more --steps or a smaller --lr"
    return None


def save_gantt(trace, path: str, title: str) -> None:  # noqa: ANN001 - a Trace
    """Draw ``trace`` as a Gantt chart into ``path`` (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    ax = trace.gantt(title=title)
    ax.figure.savefig(path, dpi=120, bbox_inches="tight")

"""The numbers ``gpipe train`` reports after training, each measured, none assumed.

Split from the CLI so the book and notebooks can produce the same report.
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass, field

from torch import Tensor, nn

from .experiments import interleaved_times, plain_step
from .memory import MemoryMeter
from .pipe import GPipe
from .reference import gradients, sequential_step
from .stage import LossFn
from .theory import bubble_fraction, memory_units_rematerialized, memory_units_stored


@dataclass
class Report:
    losses: list[float] = field(default_factory=list)
    samples_per_s: float = 0.0
    bubble_measured: float = 0.0
    bubble_theory: float = 0.0
    memory_measured: list[int] = field(default_factory=list)
    memory_law: list[float] = field(default_factory=list)
    max_grad_diff: float = 0.0
    step_s: float = 0.0  # one pipelined step (forward + backward), timed beside the sequential one
    sequential_s: float = 0.0  # the same model's plain forward + backward, same batch
    memory_note: str = "not measured"  # said instead of the per-stage lines when there are none

    @property
    def speedup(self) -> float:
        """Sequential step time over pipelined step time, both measured side by side."""
        return self.sequential_s / self.step_s if self.step_s else 0.0

    def text(self, K: int, M: int) -> str:
        lines = ["loss per step: " + " ".join(f"{v:.4f}" for v in self.losses),
                 f"training throughput: {self.samples_per_s:,.0f} samples/s (optimizer included)",
                 f"step time: {self.step_s * 1e3:,.1f} ms pipelined vs {self.sequential_s * 1e3:,.1f} ms for the "
                 f"same model run sequentially (speedup {self.speedup:.2f}x)",
                 f"bubble: measured {self.bubble_measured:.3f}, theory (K-1)/(M+K-1) = "
                 f"({K}-1)/({M}+{K}-1) = {self.bubble_theory:.3f}",
                 "activation memory per stage " + ("(measured vs law):" if self.memory_measured else self.memory_note)]
        for j, (got, law) in enumerate(zip(self.memory_measured, self.memory_law)):
            lines.append(f"  stage {j}: {got / 2**20:8.2f} MiB measured, {law / 2**20:8.2f} MiB by the law")
        lines.append(f"largest gradient difference against the sequential model: {self.max_grad_diff:.2e}")
        return "\n".join(lines)


def _saved_bytes(layers: nn.Sequential, x: Tensor) -> int:
    meter = MemoryMeter(list(layers.parameters()))
    with meter.saving():
        out = layers(x.detach().requires_grad_())
    held = meter.peak
    del out
    return held


def layer_bytes_per_sample(layers: nn.Sequential, x: Tensor) -> float:
    """Activation bytes one more layer adds for backward, per sample (the law's per-layer unit).

    Measured as the difference between the first two layers and the first one,
    so a tensor two layers share (one's output saved as the next one's input)
    counts once, as it does in the pipeline.
    """
    if len(layers) >= 2:
        return (_saved_bytes(layers[:2], x) - _saved_bytes(layers[:1], x)) / x.shape[0]
    return _saved_bytes(layers[:1], x) / x.shape[0]


def memory_law_bytes(pipe: GPipe, x: Tensor) -> list[float]:
    """The law's activation bytes per stage, in this model's units.

    Every stage keeps its boundary input for all N samples. With
    re-materialisation it adds one micro-batch's working set, (layers of the
    stage) x (N/M samples) x (bytes one layer adds); without, the whole batch's.
    The loss's own saved tensors (e.g. the target) are not part of the law.
    """
    N, M = x.shape[0], pipe.chunks
    boundary = x[:1].numel() * x.element_size()
    per_layer = layer_bytes_per_sample(pipe.partitions[0], x[: max(1, N // M)])
    out = []
    for L_j in pipe.balance:
        if pipe.checkpoint == "never":
            units = memory_units_stored(N, L_j, 1)
        else:
            units = memory_units_rematerialized(N, L_j, M, 1) - N  # the working set beyond the N inputs
        out.append(N * boundary + units * per_layer)
    return out


def measure(pipe: GPipe, model: nn.Sequential, x: Tensor, y: Tensor, loss_fn: LossFn, losses: list[float],
            elapsed: float, repeats: int = 3) -> Report:
    """Everything after training ``model`` (the nn.Sequential ``pipe`` wraps).

    Speed against the same model run plainly in this process, the bubble of the
    last step, activation memory of one measured step against the law, and the
    largest gradient difference of that step against :func:`sequential_step`.
    """
    K, M = pipe.K, pipe.chunks
    report = Report(losses=losses, samples_per_s=len(losses) * x.shape[0] / elapsed)
    report.bubble_measured = pipe.trace.bubble() if pipe.trace else 0.0
    report.bubble_theory = bubble_fraction(M, K)
    ref = copy.deepcopy(model).cpu()
    xc, yc = x.cpu(), y.cpu()
    times = interleaved_times({"pipe": lambda: pipe.step(x, y, loss_fn, seed=0),
                               "sequential": lambda: plain_step(ref, xc, yc, loss_fn)}, repeats)
    report.step_s = statistics.median(times["pipe"])
    report.sequential_s = statistics.median(times["sequential"])

    model.zero_grad(set_to_none=True)
    ref.zero_grad(set_to_none=True)
    pipe.step(x, y, loss_fn, seed=1234, measure_memory=True)
    report.memory_measured = list(pipe.memory or [])
    report.memory_law = memory_law_bytes(pipe, x)
    sequential_step(ref, xc, yc, loss_fn, balance=pipe.balance, chunks=M, seed=1234)
    diffs = [(a.cpu() - b).abs().max().item() for a, b in zip(gradients(model), gradients(ref))
             if a is not None and b is not None]
    report.max_grad_diff = max(diffs, default=0.0)
    return report

"""The numbers ``gpipe train`` reports after training, each measured, none assumed.

Split from the CLI so the book, the notebooks and the distributed worker
produce the same report. The speed part answers a newcomer's first question
honestly. On a CPU the K stages share the machine's cores, so "pipelined
against the plain model on every core" mostly measures that sharing. The
comparison that predicts K real devices gives both sides the same cores per
stage: the same M micro-batches run through one stage with the threads one
stage of the pipe has. Both lines are printed, and a sentence says which
one stands for a multi-device run.
"""

from __future__ import annotations

import copy
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..engine.memory import MemoryMeter
from ..engine.pipe import GPipe
from ..engine.reference import gradients, sequential_step
from ..sim.theory import bubble_fraction, ideal_speedup, memory_units_rematerialized, memory_units_stored
from ..workloads.training import Run, Task
from .experiments import interleaved_times, plain_step, with_threads

FILL_DRAIN = ("gpipe", "1f1b")  # the schedules whose bubble is (K-1)/(M+K-1)


@dataclass
class Report:
    losses: list[float] = field(default_factory=list)
    throughput: float = 0.0
    unit: str = "samples"
    bubble_measured: float = 0.0
    bubble_theory: float | None = None  # None for schedules the fill-drain formula does not describe
    memory_measured: list[int] = field(default_factory=list)
    memory_law: list[float] = field(default_factory=list)
    memory_note: str = "not measured"  # said instead of the per-stage lines when there are none
    memory_per: str = "stage"  # what one memory entry covers: a "stage", or a "device" holding several
    max_grad_diff: float = 0.0
    step_s: float = 0.0  # one pipelined step (forward + backward)
    one_stage_s: float = 0.0  # the same M micro-batches through one stage with one stage's threads
    plain_s: float = 0.0  # the plain model's full-batch step on every core
    threads_per_stage: int = 1
    cores: int = 1
    separate_devices: bool = False  # every stage on a device of its own (K GPUs)
    load: float = 0.0  # the machine's 1-minute load average when the speed was measured

    @property
    def speedup(self) -> float:
        """Comparison (a): one stage over K stages, the same cores per stage on both sides."""
        return self.one_stage_s / self.step_s if self.step_s else 0.0

    @property
    def speedup_plain(self) -> float:
        """Comparison (b): the plain model on every core over the pipeline on the same machine."""
        return self.plain_s / self.step_s if self.step_s else 0.0

    def speed_lines(self, K: int, M: int) -> list[str]:
        t = self.threads_per_stage
        per = f"{t} thread{'s' if t > 1 else ''}"
        ideal = f" (ideal K*M/(M+K-1) = {ideal_speedup(M, K):.2f}x)" if self.bubble_theory is not None else ""
        lines = [f"step time: {self.step_s * 1e3:,.1f} ms pipelined over K={K} devices",
                 f"  (a) same {M} micro-batches on one stage with {per}: {self.one_stage_s * 1e3:,.1f} ms, "
                 f"speedup {self.speedup:.2f}x{ideal}",
                 f"  (b) plain model, full batch, all {self.cores} cores: {self.plain_s * 1e3:,.1f} ms, "
                 f"speedup {self.speedup_plain:.2f}x"]
        if self.separate_devices:
            lines.append("  every stage has a device of its own here, so (b) is the real gain and (a) shows how "
                         "close the pipeline comes to its ideal.")
        else:
            lines.append(f"  (a) predicts a run on {K} GPUs, where every stage has a device of its own as here it has "
                         f"its own {per}; (b) is what this machine gains, its {self.cores} cores shared by "
                         f"{K} stages.")
        if self.load > self.cores:
            lines.append(f"  note: the load average was {self.load:.1f} on {self.cores} cores while timing: other "
                         "programs held the cores, so both speedups read low; rerun on a quiet machine.")
        return lines

    def text(self, K: int, M: int) -> str:
        theory = (f", theory (K-1)/(M+K-1) = ({K}-1)/({M}+{K}-1) = {self.bubble_theory:.3f}"
                  if self.bubble_theory is not None else "")
        lines = ["loss per step: " + " ".join(f"{v:.4f}" for v in self.losses),
                 f"training throughput: {self.throughput:,.0f} {self.unit}/s (optimizer included)",
                 *self.speed_lines(K, M),
                 f"bubble: measured {self.bubble_measured:.3f}{theory}",
                 f"activation memory per {self.memory_per} " + (
                     ("(measured vs law):" if self.memory_law else "(measured):") if self.memory_measured
                     else self.memory_note)]
        for j, got in enumerate(self.memory_measured):
            law = f", {self.memory_law[j] / 2**20:8.2f} MiB by the law" if self.memory_law else ""
            lines.append(f"  {self.memory_per} {j}: {got / 2**20:8.2f} MiB measured{law}")
        lines.append(f"largest gradient difference against the sequential model: {self.max_grad_diff:.2e}")
        return "\n".join(lines)


def start_report(run: Run, task: Task, K: int, M: int, schedule: object) -> Report:
    """The parts every engine reports alike: losses, throughput, the bubble the formula predicts."""
    theory = bubble_fraction(M, K) if schedule in FILL_DRAIN else None
    return Report(losses=run.losses, throughput=run.throughput, unit=task.unit, bubble_theory=theory,
                  cores=os.cpu_count() or 1)


def time_speed(report: Report, pipe_step: Callable[[], object], one_stage: Callable[[], object],
               plain: Callable[[], object], repeats: int = 3) -> None:
    """Median times of the three steps, measured round-robin so load drifts hit them alike."""
    times = interleaved_times({"pipe": pipe_step, "one": one_stage,
                               "plain": with_threads(report.cores, plain)}, repeats)
    report.load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    report.step_s, report.one_stage_s, report.plain_s = (statistics.median(times[k]) for k in ("pipe", "one", "plain"))


def max_grad_diff(model: nn.Module, ref: nn.Module) -> float:
    """The largest absolute difference between the two models' gradients, parameter by parameter."""
    diffs = [(a.cpu() - b.cpu()).abs().max().item() for a, b in zip(gradients(model), gradients(ref))
             if a is not None and b is not None]
    return max(diffs, default=0.0)


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
    per_layer = layer_bytes_per_sample(pipe.stage_modules[0], x[: max(1, N // M)])
    out = []
    for L_j in pipe.balance:
        if pipe.checkpoint == "never":
            units = memory_units_stored(N, L_j, 1)
        else:
            units = memory_units_rematerialized(N, L_j, M, 1) - N  # the working set beyond the N inputs
        out.append(N * boundary + units * per_layer)
    return out


def measure(pipe: GPipe, task: Task, run: Run, threads_per_stage: int, schedule: object = "gpipe",
            repeats: int = 3) -> Report:
    """Everything after training ``task.model`` through ``pipe`` on the thread engine.

    Speed (the pipe, one stage with the same threads, the plain model on every
    core), the bubble of the last step, activation memory of one measured step
    against the law, and the largest gradient difference of that step against
    :func:`sequential_step`.
    """
    K, M = pipe.K, pipe.chunks
    x, y = run.last if run.last is not None else next(task.batches)
    report = start_report(run, task, K, M, schedule)
    report.bubble_measured = pipe.trace.bubble() if pipe.trace else 0.0
    report.threads_per_stage = threads_per_stage  # what each of the pipe's CPU stages was given
    report.separate_devices = all(d.type != "cpu" for d in pipe.devices) and len(set(pipe.devices)) == pipe.S
    ref = copy.deepcopy(task.model).cpu()
    with GPipe(copy.deepcopy(task.model).cpu(), partitions=1, chunks=M, checkpoint=pipe.checkpoint,
               threads_per_stage=report.threads_per_stage) as one:
        xc, yc = x.cpu(), y.cpu()
        time_speed(report, lambda: pipe.step(x, y, task.loss_fn, seed=0),
                   lambda: one.step(xc, yc, task.loss_fn, seed=0),
                   lambda: plain_step(ref, xc, yc, task.loss_fn), repeats)

    task.model.zero_grad(set_to_none=True)
    ref.zero_grad(set_to_none=True)
    pipe.step(x, y, task.loss_fn, seed=1234, measure_memory=True)
    report.memory_measured = list(pipe.memory or [])  # one entry per device
    report.memory_per = "stage" if pipe.S == K else "device"
    if task.uniform_layers and schedule in FILL_DRAIN and pipe.S == K:  # the law is fill-drain's, one stage a device
        report.memory_law = memory_law_bytes(pipe, x)
    sequential_step(ref, xc, yc, task.loss_fn, balance=pipe.balance, chunks=M, seed=1234)
    report.max_grad_diff = max_grad_diff(task.model, ref)
    return report


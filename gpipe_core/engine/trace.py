"""What really happened in a step: timed boxes, the measured bubble, a Gantt chart.

Every action a stage runs becomes an :class:`Event` (stage, micro-batch, kind,
start, end). Kinds are ``F`` (forward), ``R`` (recomputation of a forward in
backward), ``B`` (backward) and its two halves ``I`` (input gradient) and ``W``
(weight gradients). Time is kept in one place, :class:`Clock`: a stage stamps
its actions with it (host time on CPU, an event on the stage's stream on CUDA,
so the host never waits) and the trace turns stamps into seconds afterwards. Drawn with stages as rows and time as the x
axis, the trace is the schedule table again, in seconds instead of ticks, so a
learner can hold their table and the measurement side by side.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple

import torch

COLORS = {"F": "#4c72b0", "R": "#dd8452", "B": "#55a868", "I": "#8fbc5a", "W": "#2f6b3a"}
LABELS = {"F": "forward", "R": "recompute", "B": "backward", "I": "input gradient", "W": "weight gradient"}


class Clock:
    """Stamps for a step's actions and their conversion to seconds on one host time line."""

    def __init__(self) -> None:
        self._base: dict[Any, Any] = {"host": time.perf_counter()}

    def now(self, stream: Any = None) -> Any:
        """Host seconds on CPU; on CUDA an event recorded on ``stream`` (read after the step)."""
        if stream is None:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(stream)
        return event

    def begin(self, devices: Iterable[torch.device]) -> None:
        """Mark the step's start on the host and on every CUDA device, so stamps share one origin."""
        self._base = {"host": time.perf_counter()}
        for dev in {d for d in devices if d.type == "cuda"}:
            event = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(dev)
            event.record(torch.cuda.current_stream(dev))
            self._base[dev] = event

    def seconds(self, stamp: Any, device: torch.device) -> float:
        if isinstance(stamp, float):
            return stamp
        return self._base["host"] + self._base[device].elapsed_time(stamp) / 1e3


class Stamp(NamedTuple):
    """One action as its stage stamped it: host seconds on CPU, CUDA events on a GPU (read after the step)."""

    microbatch: int
    kind: str
    start: Any
    end: Any


class StageStamps(NamedTuple):
    """A stage's stamps of one step, with the device whose clock took them."""

    stage: int
    device: torch.device
    events: list[Stamp]


@dataclass(frozen=True, slots=True)
class Event:
    stage: int
    microbatch: int
    kind: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Trace:
    """The events of one step on K stages."""

    K: int
    events: list[Event] = field(default_factory=list)
    placement: list[int] | None = None  # device of each stage, when rows are devices holding several stages

    @classmethod
    def from_stamps(cls, K: int, stamps: Iterable[StageStamps], clock: Clock,
                    placement: Sequence[int] | None = None) -> Trace:
        """The trace of a step's raw stamps, each stage's on its device's clock."""
        trace = cls(K, placement=None if placement is None else list(placement))
        for stage, device, events in stamps:
            for i, kind, start, end in events:
                trace.add(stage, i, kind, clock.seconds(start, device), clock.seconds(end, device))
        trace.events.sort(key=attrgetter("start"))
        return trace

    def row(self, stage: int) -> int:
        """The row (device) a stage's events are drawn on."""
        return stage if self.placement is None else self.placement[stage]

    def add(self, stage: int, microbatch: int, kind: str, start: float, end: float) -> None:
        self.events.append(Event(stage, microbatch, kind, start, end))

    def shifted(self) -> Trace:
        """The same trace with time starting at zero."""
        t0 = min((e.start for e in self.events), default=0.0)
        return Trace(self.K, [Event(e.stage, e.microbatch, e.kind, e.start - t0, e.end - t0) for e in self.events],
                     self.placement)

    @property
    def span(self) -> float:
        if not self.events:
            return 0.0
        return max(e.end for e in self.events) - min(e.start for e in self.events)

    def busy(self, row: int) -> float:
        """Seconds row ``row`` (a device) spent computing (recomputation included)."""
        return sum(e.duration for e in self.events if self.row(e.stage) == row)

    def bubble(self) -> float:
        """Measured idle fraction: 1 - (busy time of all stages) / (K * span)."""
        span = self.span
        if span <= 0:
            return 0.0
        return 1.0 - sum(self.busy(j) for j in range(self.K)) / (self.K * span)

    def utilisation(self) -> list[float]:
        span = self.span or 1.0
        return [self.busy(j) / span for j in range(self.K)]

    def gantt(self, ax: Any = None, title: str | None = None, unit: str = "ms", labels: bool = True) -> Any:
        """Draw the trace: one row per stage (stage 0 on top), one box per event."""
        return draw_gantt(self.shifted().events, self.K, ax=ax, title=title, unit=unit, labels=labels,
                          placement=self.placement)


def draw_gantt(
    events: Iterable[Event], K: int, ax: Any = None, title: str | None = None,
    unit: str = "ms", labels: bool = True, placement: Sequence[int] | None = None,
) -> Any:
    """Gantt chart of events whose times are in seconds (``unit='tick'`` draws them as they are).

    Rows are stages, or with a ``placement`` devices (boxes then name their stage too).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    events = list(events)
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6, "tick": 1.0}[unit]
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.55 * K + 1.2))
    for e in events:
        x, w = e.start * scale, e.duration * scale
        row = e.stage if placement is None else placement[e.stage]
        ax.broken_barh([(x, w)], (row - 0.4, 0.8), facecolors=COLORS.get(e.kind, "grey"),
                       edgecolor="white", linewidth=0.8)
        if labels:
            name = f"{e.kind}{e.microbatch}" + ("" if placement is None else f":{e.stage}")
            ax.text(x + w / 2, row, name, ha="center", va="center", color="white", fontsize=8, clip_on=True)
    ax.set_yticks(range(K), [f"{'stage' if placement is None else 'device'} {j}" for j in range(K)])
    ax.set_ylim(K - 0.5, -0.5)
    ax.set_xlabel("clock tick" if unit == "tick" else f"time ({unit})")
    kinds = {e.kind for e in events}
    ax.legend(handles=[Patch(color=COLORS[k], label=LABELS[k]) for k in "FRBIW" if k in kinds],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    if title:
        ax.set_title(title)
    return ax

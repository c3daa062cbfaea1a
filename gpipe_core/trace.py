"""What really happened in a step: timed boxes, the measured bubble, a Gantt chart.

Every action a stage runs becomes an :class:`Event` (stage, micro-batch, kind,
start, end). Kinds are ``F`` (forward), ``R`` (recomputation of a forward in
backward) and ``B`` (backward). Drawn with stages as rows and time as the x
axis, the trace is the schedule table again, in seconds instead of ticks, so a
learner can hold their table and the measurement side by side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

COLORS = {"F": "#4c72b0", "R": "#dd8452", "B": "#55a868"}
LABELS = {"F": "forward", "R": "recompute", "B": "backward"}


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

    def add(self, stage: int, microbatch: int, kind: str, start: float, end: float) -> None:
        self.events.append(Event(stage, microbatch, kind, start, end))

    def shifted(self) -> Trace:
        """The same trace with time starting at zero."""
        t0 = min((e.start for e in self.events), default=0.0)
        return Trace(self.K, [Event(e.stage, e.microbatch, e.kind, e.start - t0, e.end - t0) for e in self.events])

    @property
    def span(self) -> float:
        if not self.events:
            return 0.0
        return max(e.end for e in self.events) - min(e.start for e in self.events)

    def busy(self, stage: int) -> float:
        return sum(e.duration for e in self.events if e.stage == stage)

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
        return draw_gantt(self.shifted().events, self.K, ax=ax, title=title, unit=unit, labels=labels)


def draw_gantt(
    events: Iterable[Event], K: int, ax: Any = None, title: str | None = None,
    unit: str = "ms", labels: bool = True,
) -> Any:
    """Gantt chart of events whose times are in seconds (``unit='tick'`` draws them as they are)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    events = list(events)
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6, "tick": 1.0}[unit]
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.55 * K + 1.2))
    for e in events:
        x, w = e.start * scale, e.duration * scale
        ax.broken_barh([(x, w)], (e.stage - 0.4, 0.8), facecolors=COLORS.get(e.kind, "grey"),
                       edgecolor="white", linewidth=0.8)
        if labels:
            ax.text(x + w / 2, e.stage, f"{e.kind}{e.microbatch}", ha="center", va="center",
                    color="white", fontsize=8, clip_on=True)
    ax.set_yticks(range(K), [f"stage {j}" for j in range(K)])
    ax.set_ylim(K - 0.5, -0.5)
    ax.set_xlabel("clock tick" if unit == "tick" else f"time ({unit})")
    kinds = {e.kind for e in events}
    ax.legend(handles=[Patch(color=COLORS[k], label=LABELS[k]) for k in "FRB" if k in kinds],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    if title:
        ax.set_title(title)
    return ax

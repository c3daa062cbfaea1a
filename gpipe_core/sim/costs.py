"""What each action costs: the simulator's input, set by hand, by a preset, or measured from a real run.

Why a module of its own: the costs are the assumptions every simulated
bubble and memory figure rests on (F, B, I, W and F&B times, the hand-off
between devices, the link of :mod:`gpipe_core.sim.comm`), so they are written
down in one place, apart from the walker that uses them
(:mod:`gpipe_core.sim.simulate`, which re-exports these names).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..engine.trace import Trace
from ..schedules.schedule import Action, dependency_map
from .comm import Comm

Number = float | int
PerStage = Sequence[Number] | Number


@dataclass(frozen=True)
class Costs:
    """Per-stage durations in seconds (or ticks): lists with one entry per stage, or one number for all.

    ``input_grad`` (I) and ``weight_grad`` (W) default to half of ``backward`` each. ``overlap``
    is DualPipe's F&B, the time of an overlapped forward-and-backward cell (per stage of its
    forward); None means no overlap is gained: the forward's and the backward's times added.
    ``handoff`` is a fixed delay on every dependency between devices (a measured thread hand-off);
    ``comm`` the link between devices (:class:`~gpipe_core.sim.comm.Comm`), None for a free one.
    ``in_turn``: an overlapped cell's forward and backward run as two actions in a row, each when its
    own inputs are there, as the engine issues them (the table's cell, DeepSeek's model, starts both at once).
    """

    forward: PerStage = 1.0
    backward: PerStage = 1.0
    recompute: PerStage = 0.0
    handoff: float = 0.0
    input_grad: PerStage | None = None
    weight_grad: PerStage | None = None
    overlap: PerStage | None = None
    comm: Comm | None = None
    in_turn: bool = False

    def of(self, field: PerStage, stage: int) -> float:
        return per_stage(field, stage)

    def duration(self, kind: str, stage: int) -> float:
        """How long one ``kind`` action (F, B, I, W or R) takes on ``stage``."""
        if kind in ("I", "W"):
            split = self.input_grad if kind == "I" else self.weight_grad
            return self.of(split, stage) if split is not None else self.of(self.backward, stage) / 2
        return self.of({"F": self.forward, "B": self.backward, "R": self.recompute}[kind], stage)


UNIT = Costs(forward=1, backward=2, input_grad=1, weight_grad=1)
"""The unit costs of :mod:`gpipe_core.schedules.zoo`'s closed forms: F = I = W = 1, B = 2 (and F&B = F + B = 3)."""


def per_stage(field: PerStage, stage: int) -> float:
    return float(field if isinstance(field, (int, float)) else field[stage])


def costs_from_trace(trace: Trace) -> Costs:
    """Per-stage mean forward / backward / I / W / recompute durations measured in a real trace.

    The hand-off is the mean delay between the moment an action could have
    started (its device free, what it waits for finished) and its real start.
    Means, not medians: a cost model must keep the total time of the run, and
    with few micro-batches a median picks one action's duration for all.
    """
    stages = 1 + max((e.stage for e in trace.events), default=-1)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    def durations(kind: str) -> list[float]:
        return [mean([e.duration for e in trace.events if e.kind == kind and e.stage == s]) for s in range(stages)]

    actions = [Action(e.kind, e.microbatch, e.stage) for e in trace.events if e.kind != "R"]  # type: ignore[arg-type]
    deps = dependency_map(actions, stages)
    end = {(e.kind, e.microbatch, e.stage): e.end for e in trace.events if e.kind != "R"}
    delays = []
    for row in range(trace.K):
        events = sorted((e for e in trace.events if trace.row(e.stage) == row), key=lambda e: e.start)
        for prev, e in zip(events, events[1:]):
            if e.kind == "R" or prev.kind == "R" and prev.microbatch == e.microbatch:
                continue
            waits = [end[(w.kind, w.microbatch, w.stage)] for w in deps[Action(e.kind, e.microbatch, e.stage)]
                     if trace.row(w.stage) != row]  # type: ignore[arg-type]
            if waits:
                delays.append(max(0.0, e.start - max([prev.end, *waits])))
    has_split = any(e.kind in ("I", "W") for e in trace.events)
    return Costs(forward=durations("F"), backward=durations("B"), recompute=durations("R"), handoff=mean(delays),
                 input_grad=durations("I") if has_split else None, weight_grad=durations("W") if has_split else None)

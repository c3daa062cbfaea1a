"""Traces a person can open: Chrome trace-event JSON for Perfetto (ui.perfetto.dev) or chrome://tracing.

Why this format: it is the one every timeline viewer reads, so a step of the
engine, a simulated table and a torch profile can sit in the same tool. A
measured run (``pipe.trace``) and a simulated table (:func:`gpipe_core.sim.simulate.simulate`)
are both :class:`~gpipe_core.engine.trace.Trace` objects, so one function writes both.

What is written (``{"traceEvents": [...], "displayTimeUnit": ..., "otherData": {...}}``):

* one *complete* event (``"ph": "X"``) per timed action: ``name`` like ``F3``
  (``F3:5`` with virtual stages), ``ts`` and ``dur`` in microseconds,
  ``pid`` 0 (the step) and ``tid`` the device, and ``args`` with the
  ``microbatch``, the ``kind`` (F, B, I, W, or R for a recomputation) and
  the ``stage``;
* metadata events naming the process and one thread per device
  (``"device 0"``, ...) and keeping them in device order: one track per device;
* one *flow* (an arrow: ``"ph": "s"`` on the sender's slice, ``"ph": "f"``
  on the receiver's) per message between two devices: a forward's output to
  the next stage's forward, an input gradient (B or I) to the previous
  stage's backward (its recomputation, when it has one). Messages between two
  stages of one device (the tip of a V) move nothing and get no arrow. In a
  simulated table with a link (:class:`~gpipe_core.sim.comm.Comm`) the arrow's
  length is the hop's cost plus any wait.

A device whose slices overlap in time (two stages of one GPU on their own
streams, an overlapped F&B) gets a second track, ``"device d (overlapped)"``,
for the slices that would not nest, because viewers require the slices of
one track to nest.

Times: a measured trace is in seconds; a simulated one is in the cost
model's units, written as 1 ms per unit (``units_per_second=1000``) so the
viewer's clock reads in units, and ``otherData`` says which costs made it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..engine.trace import Event, Trace
from ..schedules.actions import Cell

PID = 0
LANES = 100  # tid = device + LANES * lane: a second track for a device's overlapping slices


def chrome_trace(trace: Trace, units_per_second: float = 1.0, name: str = "gpipe step",
                 about: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trace as a Chrome trace-event document (see the module docstring).

    ``units_per_second``: how many of the trace's time units make a second (1 for a measured trace in
    seconds, 1000 to show a simulated table's units as milliseconds). ``about`` goes to ``otherData``.
    """
    if units_per_second <= 0:
        raise ValueError(f"units_per_second must be positive (got {units_per_second}): 1 for seconds, "
                         "1000 to read a simulated table's units as milliseconds")
    scale = 1e6 / units_per_second
    t0 = min((e.start for e in trace.events), default=0.0)
    virtual = trace.placement is not None
    events: list[dict[str, Any]] = [{"ph": "M", "pid": PID, "tid": 0, "name": "process_name", "args": {"name": name}}]
    tracks: set[int] = set()
    for device, lane, e in _lanes(trace):
        tid = device + LANES * lane
        tracks.add(tid)
        events.append({
            "name": f"{e.kind}{e.microbatch}" + (f":{e.stage}" if virtual else ""), "cat": e.kind, "ph": "X",
            "ts": (e.start - t0) * scale, "dur": max(0.0, e.end - e.start) * scale, "pid": PID, "tid": tid,
            "args": {"microbatch": e.microbatch, "kind": e.kind, "stage": e.stage, "device": device},
        })
    events += _flows(trace, t0, scale)
    for device in range(trace.K):
        tracks.add(device)  # an idle device still gets its track
    for tid in sorted(tracks):
        device, lane = tid % LANES, tid // LANES
        label = f"device {device}" + (" (overlapped)" if lane else "")
        events.append({"ph": "M", "pid": PID, "tid": tid, "name": "thread_name", "args": {"name": label}})
        events.append({"ph": "M", "pid": PID, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": tid}})
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": dict(about or {})}


def table_trace(schedule: Sequence[Sequence[Cell]], K: int, costs: Any = None,
                placement: Sequence[int] | None = None, recompute: Sequence[bool] | bool = False,
                name: str = "simulated table") -> dict[str, Any]:
    """A table simulated under ``costs`` (unit costs F = I = W = 1, B = 2 by default), as a Chrome trace."""
    from .simulate import UNIT, simulate

    costs = UNIT if costs is None else costs
    trace = simulate(schedule, K, costs, recompute=recompute, placement=placement)
    return chrome_trace(trace, units_per_second=1000, name=name,
                        about={"time": "1 ms per cost unit", "costs": repr(costs)})


def write(document: dict[str, Any], path: str | Path) -> Path:
    """Write a trace document (from :func:`chrome_trace` or :func:`table_trace`) as JSON; returns the path."""
    path = Path(path)
    path.write_text(json.dumps(document))
    return path


def _flows(trace: Trace, t0: float, scale: float) -> list[dict[str, Any]]:
    """Flow events for every message between two devices (see the module docstring), on lane-0 tracks' ids."""
    lanes = {(e.kind, e.microbatch, e.stage): device + LANES * lane for device, lane, e in _lanes(trace)}
    timed = {(e.kind, e.microbatch, e.stage): e for e in trace.events}
    stages = 1 + max((e.stage for e in trace.events), default=-1)
    out: list[dict[str, Any]] = []
    for e in sorted(trace.events, key=lambda e: (e.end, e.stage)):
        to = e.stage + 1 if e.kind == "F" else e.stage - 1 if e.kind in ("B", "I") else -1
        if not 0 <= to < stages or trace.row(to) == trace.row(e.stage):
            continue
        wants = ("F",) if e.kind == "F" else ("R", "I", "B")  # a recomputation is the first to need the gradient
        receiver = next((timed[k, e.microbatch, to] for k in wants if (k, e.microbatch, to) in timed), None)
        if receiver is None:
            continue
        key = (receiver.kind, receiver.microbatch, receiver.stage)
        flow = {"name": "send" if e.kind == "F" else "gradient", "cat": "hop", "id": len(out) // 2, "pid": PID,
                "args": {"microbatch": e.microbatch, "from_stage": e.stage, "to_stage": to}}
        sent = (e.end - t0) * scale
        out.append({**flow, "ph": "s", "tid": lanes[e.kind, e.microbatch, e.stage],
                    "ts": max((e.start - t0) * scale, sent - 1e-3)})  # just inside the sender's slice
        out.append({**flow, "ph": "f", "bp": "e", "tid": lanes[key], "ts": (receiver.start - t0) * scale})
    return out


def _lanes(trace: Trace) -> list[tuple[int, int, Event]]:
    """(device, lane, event) for every event: lane 0 unless it overlaps a slice already on the device's lanes."""
    ends: dict[int, list[float]] = {}
    out = []
    for e in sorted(trace.events, key=lambda e: (e.start, -e.end)):
        device = trace.row(e.stage)
        lanes = ends.setdefault(device, [])
        lane = next((n for n, end in enumerate(lanes) if end <= e.start + 1e-12), len(lanes))
        if lane == len(lanes):
            lanes.append(e.end)
        else:
            lanes[lane] = e.end
        out.append((device, lane, e))
    return out

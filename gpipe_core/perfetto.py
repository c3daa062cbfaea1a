"""Traces a person can open: Chrome trace-event JSON for Perfetto (ui.perfetto.dev) or chrome://tracing.

Why this format: it is the one every timeline viewer reads, so a step of the
engine, a simulated table and a torch profile can sit in the same tool. A
measured run (``pipe.trace``) and a simulated table (:func:`gpipe_core.simulate.simulate`)
are both :class:`~gpipe_core.trace.Trace` objects, so one function writes both.

What is written (``{"traceEvents": [...], "displayTimeUnit": ..., "otherData": {...}}``):

* one *complete* event (``"ph": "X"``) per timed action: ``name`` like ``F3``
  (``F3:5`` with virtual stages), ``ts`` and ``dur`` in microseconds,
  ``pid`` 0 (the step) and ``tid`` the device, and ``args`` with the
  ``microbatch``, the ``kind`` (F, B, I, W, or R for a recomputation) and
  the ``stage``;
* metadata events naming the process and one thread per device
  (``"device 0"``, ...) and keeping them in device order: one track per device.

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

from .actions import Cell
from .trace import Event, Trace

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

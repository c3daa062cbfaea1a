"""The kernel-free explorer's data, computed from gpipe_core when the book is built.

Why precomputed: the published site has no Python, yet the explorer must show
exactly the tables gpipe_core builds, the timelines its simulator gives them
and the memory each device holds. So this module evaluates every schedule for
K = 1..max_K and M = 1..max_M under a few cost presets and the page's
JavaScript (``book/_static/gpipe-explorer.js``) only draws the result.

Every schedule of ``gpipe_core.schedules.zoo.BUILTINS`` is offered, so a schedule added
there appears on the site with the next build. DualPipe (``zoo.TWO_WAY``) is
not: its table cuts the chain between stage copies K-1 and K, which the
simulator timing these entries does not know; ``gpipe schedule --schedule
dualpipe`` shows its step, bubble and memory. With V virtual stages per
device each stage is 1/V of a device's share of the model, so its actions cost
1/V of the preset's; that keeps every schedule on the same time axis.

One entry per (schedule, K, M), or ``None`` with ``why`` where the builder
refuses that K and M:

``order[d]``
    device d's actions in the order it runs them, as tokens ``F3:5`` (kind,
    micro-batch, stage); the order does not depend on the costs. An
    overlapped F&B cell (DualPipeV's) gives its forward, then its backward,
    timed end to end inside the cell as the simulator draws them.
``start[c][d][n]``
    when the n-th action of device d starts under preset c, in units of
    1/UNIT forward (whole numbers keep the file small); a number in place of
    the list means "as under that preset" (a table without I and W times the
    presets with the same forward and backward alike).
``length[c]``, ``bubble[c]``
    the step's length (in the same units) and its idle fraction under preset c
    (the simulator's).

A preset c is a cost preset (F : I : W) and a link preset (``COMMS``: no
communication cost, or each hop between two devices taking a quarter of a
forward, beside the compute or blocking its sender; a hop inside one device
is free): c = link x len(COSTS) + cost, so the first len(COSTS) presets are
the cost presets without a link.
``memory[c][d]``
    device d's peak activation memory under preset c (the same for every
    preset: a device runs one action at a time, so its peak depends only on
    its order, and it is sized once), from the simulator
    (``gpipe_core.sim.simulate.peak_memory``), in micro-batches of a whole
    device's share of the model (a stage held counts 1/V).
``bubble_formula``, ``memory_remat``, ``memory_stored``
    the paper's formulas for the same K and M, for comparison.
"""

from __future__ import annotations

import inspect
from typing import Any

from gpipe_core.course.widgets import explorer
from gpipe_core.engine.trace import COLORS, LABELS
from gpipe_core.schedules.schedule import device_orders, flatten
from gpipe_core.schedules.zoo import BUILTINS, Builtin
from gpipe_core.sim.comm import Comm
from gpipe_core.sim.simulate import Costs, peak_memory, simulate
from gpipe_core.sim.theory import bubble_fraction, memory_units_rematerialized, memory_units_stored

# Ranges, batch and depth as gpipe_core.course.widgets.explorer has them, so the site and the notebook widget agree.
_EXPLORER = inspect.signature(explorer).parameters
MAX_K, MAX_M = _EXPLORER["max_K"].default, _EXPLORER["max_M"].default
N, L = _EXPLORER["N"].default, _EXPLORER["L"].default

# Cost presets F : I : W (B = I + W), in units of one forward; times are stored in 1/UNIT of one
# (with V = 2 a stage's I of 1/2 forward takes 1/4).
UNIT = 4
COSTS = [
    {"F": 1.0, "I": 0.5, "W": 0.5, "label": "1 : ½ : ½ (backward = forward, the paper's clock ticks)"},
    {"F": 1.0, "I": 1.0, "W": 1.0, "label": "1 : 1 : 1 (backward = 2 forwards, as for matrix products)"},
    {"F": 1.0, "I": 1.5, "W": 0.5, "label": "1 : 1½ : ½ (the input gradient dominates)"},
]
COMMS = [
    {"label": "free (no communication cost)", "comm": None},
    {"label": "each hop between devices ¼ forward, beside the compute", "comm": Comm(latency=0.25)},
    {"label": "each hop between devices ¼ forward, the sender waits", "comm": Comm(latency=0.25, overlap=False)},
]
KINDS = "FBIW"
NAMES = {"gpipe": "GPipe (fill-drain)", "1f1b": "1F1B", "interleaved": "interleaved 1F1B (V = 2)",
         "zb-h1": "ZB-H1 (zero bubble, 1F1B's memory)", "zb-h2": "ZB-H2 (zero bubble, more memory)",
         "zbv": "ZBV (zero bubble, V-shape, V = 2)", "looped-bfs": "looped BFS (V = 2)",
         "dualpipev": "DualPipeV (overlapped F&B, V-shape, M >= 2K)", "v-min": "V-Min (a third of 1F1B's memory)",
         "v-half": "V-Half (half of 1F1B's memory)", "v-zb": "V-ZB (1F1B's memory, no gap inside a device's window)"}


def schedule_entry(builtin: Builtin, K: int, M: int) -> dict[str, Any] | None:
    """One (schedule, K, M) cell of the explorer (see the module docstring); None if it cannot be built."""
    table, placement, V = builtin.build(M, K), builtin.placement(K), builtin.virtual
    orders = [list(flatten([order])) for order in device_orders(table, placement)]
    split = any(a.kind in "IW" for order in orders for a in order)
    starts: list[Any] = []
    lengths, bubbles, seen = [], [], {}
    memory = None
    for c, (link, preset) in enumerate((link, preset) for link in COMMS for preset in COSTS):
        key = (preset["F"], preset["I"], preset["W"]) if split else (preset["F"], preset["I"] + preset["W"])
        key += (COMMS.index(link),)
        if key in seen:  # a table without I and W times presets with equal F and B alike: reuse, do not re-walk
            first = seen[key]
            lengths.append(lengths[first])
            bubbles.append(bubbles[first])
            starts.append(first)
            continue
        seen[key] = c
        costs = Costs(forward=preset["F"] / V, backward=(preset["I"] + preset["W"]) / V,
                      input_grad=preset["I"] / V, weight_grad=preset["W"] / V, comm=link["comm"])
        trace = simulate(table, K, costs, placement=placement)  # its events start where times() puts them
        lengths.append(_units(max(e.end for e in trace.events)))
        bubbles.append(round(trace.bubble(), 6))
        if memory is None:  # the order alone sets it (see the module docstring)
            memory = [round(m / V, 3) for m in peak_memory(table, K, costs=costs, placement=placement)]
        start = {(e.stage, e.microbatch, e.kind): e.start for e in trace.events}
        starts.append([[_units(start[a.stage, a.microbatch, a.kind]) for a in order] for order in orders])
    return {
        "order": [" ".join(f"{a.kind}{a.microbatch}:{a.stage}" for a in order) for order in orders],
        "virtual": V, "start": starts, "length": lengths, "bubble": bubbles, "memory": [memory] * len(starts),
        "bubble_formula": round(bubble_fraction(M, K), 6),
        "memory_remat": memory_units_rematerialized(N, L, M, K), "memory_stored": memory_units_stored(N, L, K),
    }


def _entry_or_reason(builtin: Builtin, K: int, M: int) -> dict[str, Any]:
    try:
        return schedule_entry(builtin, K, M)
    except ValueError as exc:  # ScheduleError included: the builder refuses this K and M
        return {"why": str(exc).splitlines()[0]}


def _units(time: float) -> int:
    units = time * UNIT
    if abs(units - round(units)) > 1e-6:
        raise ValueError(f"time {time} is not a whole number of 1/{UNIT} forwards: change UNIT or the presets")
    return round(units)


def explorer_data() -> dict[str, Any]:
    """Every built-in schedule for K = 1..max_K and M = 1..max_M under every cost preset."""
    costs = [{**p, "B": p["I"] + p["W"]} for p in COSTS]
    return {
        "N": N, "L": L, "maxK": MAX_K, "maxM": MAX_M, "unit": UNIT, "costs": costs,
        "comms": [link["label"] for link in COMMS],
        "kinds": {k: {"label": LABELS[k], "color": COLORS[k]} for k in KINDS},
        "schedules": {name: {"label": NAMES.get(name, name), "virtual": builtin.virtual,
                             "entries": {f"{K},{M}": _entry_or_reason(builtin, K, M)
                                         for K in range(1, MAX_K + 1) for M in range(1, MAX_M + 1)}}
                      for name, builtin in BUILTINS.items()},
    }

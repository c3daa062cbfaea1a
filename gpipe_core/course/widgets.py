"""The K/M explorer: sliders that redraw a schedule's Gantt chart with its bubble and memory.

The drawing is a plain function (:func:`draw_schedule`) so it can be tested and
used without widgets; :func:`explorer` only wires ipywidgets sliders to it.
Any schedule function ``f(M, K) -> table`` works, a learner's included, and so
does a built-in's name (``"zb-h1"``, any key of :data:`gpipe_core.schedules.zoo.BUILTINS`).
Tables with virtual stages (several per device) need ``placement``, a function
``K -> placement`` as the built-ins have.

Two clocks, and the chart says which is which. The boxes are the table itself
on its own clock: every action takes one tick (F, B, I and W alike), so a valid
table is drawn exactly as it is written. A tick is not a fixed amount of work,
though: a B is an I and a W together, so on the tick clock a split-backward
table (ZB-H1) looks longer than 1F1B although it runs faster. The title
therefore also times the table at the schedules' unit costs (F = I = W = 1,
B = 2, :data:`UNIT_COSTS`, the clock of :mod:`gpipe_core.sim.theory`), and every
comparison it prints is made on that clock.

Each schedule is compared with its own laws, never GPipe's: the bubble and the
peak micro-batches per device from :mod:`gpipe_core.sim.theory` for the named
schedule (``law``), beside what the simulator reads off the table
(:func:`gpipe_core.sim.simulate.peak_memory`). A learner's function has no law
unless one is named (``law="zb-h1"``); its table's numbers are shown alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..engine.trace import draw_gantt
from ..schedules.schedule import Schedule, gpipe_schedule, one_f_one_b_schedule
from ..schedules.validation import validate
from ..sim.simulate import Costs, peak_memory, simulate
from ..sim.theory import memory_units_rematerialized, memory_units_stored, peak_held, step_units

ScheduleFn = Callable[[int, int], Schedule]
PlacementFn = Callable[[int], list[int]]
ONE_TICK = Costs(forward=1, backward=1, input_grad=1, weight_grad=1)
"""Every action one tick: the table's own clock."""
UNIT_COSTS = Costs(forward=1, backward=2, input_grad=1, weight_grad=1)
"""The schedules' unit costs (B = I + W = 2 forwards), the clock of gpipe_core.sim.theory's closed forms."""
KNOWN = {gpipe_schedule: "gpipe", one_f_one_b_schedule: "1f1b"}


def in_grader() -> bool:
    """True while nbgrader executes the notebook: widgets and slow demos stay out of the way."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def _resolve(schedule_fn: ScheduleFn | str, placement: PlacementFn | None,
             law: str | None) -> tuple[ScheduleFn, PlacementFn | None, str | None]:
    if isinstance(schedule_fn, str):
        from ..schedules.zoo import BUILTINS

        if schedule_fn not in BUILTINS:
            raise ValueError(f"unknown schedule {schedule_fn!r}: pick one of {sorted(BUILTINS)} or pass a function")
        builtin = BUILTINS[schedule_fn]
        return (builtin.build, placement or (builtin.placement if builtin.virtual > 1 else None),
                law or schedule_fn)
    return schedule_fn, placement, law or KNOWN.get(schedule_fn)


def why_not_built(exc: Exception, K: int, M: int, virtual: bool) -> str:
    """A table that could not be built, explained in words (the interleaved M-a-multiple-of-K rule above all)."""
    if virtual and M % K:
        down, up = K * (M // K), K * -(-M // K)
        choices = f"M={up}" if down == 0 else f"M={down} or M={up}"
        return (f"Interleaved 1F1B sends micro-batches round its loop of stages in groups of K={K}: a device runs "
                f"its first chunk for K micro-batches, then its second chunk for the same K, and so on. M={M} is "
                f"not a multiple of K, so the last group is short, and a device can end up waiting for an action "
                f"that only it could have run before (a deadlock). Move M to a multiple of K: {choices}.\n"
                f"(what the schedule said: {type(exc).__name__}: {exc})")
    return f"{type(exc).__name__}: {exc}"


def _law(law: str | None, M: int, K: int, V: int) -> dict[str, Any]:
    """The named schedule's closed forms at unit costs, or why there are none at these sizes."""
    if law is None:
        return {"law": None, "why_no_law": "no schedule named (law=...): the table's own numbers only"}
    try:
        step = step_units(law, M, K, V)
        return {"law": law, "bubble_law": 1 - 3 * V * M / step, "step_law": step, "peak_law": peak_held(law, M, K, V)}
    except ValueError as exc:
        return {"law": law, "why_no_law": str(exc)}


def summary(schedule_fn: ScheduleFn | str, K: int, M: int, N: int = 256, L: int = 24,
            placement: PlacementFn | None = None, law: str | None = None) -> dict[str, Any]:
    """The table read on both clocks, the simulator's peak memory per device, and the named schedule's own laws.

    ``ticks``/``bubble_ticks``: every action one tick. ``step_units``/``bubble_units``/``peak_memory``: at
    unit costs (F = I = W = 1, B = 2) per stage; with ``virtual`` (V) stages per device a stage's forward is
    1/V of the device's, so ``step_units / virtual`` compares with one-stage-per-device schedules.
    ``bubble_law``, ``step_law``, ``peak_law``: the closed forms of the schedule named by ``law`` (a
    built-in's name by default), absent with ``why_no_law`` when none holds.
    GPipe's activation-unit laws (``memory_remat``, ``memory_stored``) are given for GPipe only.
    """
    build, placement, law = _resolve(schedule_fn, placement, law)
    place = placement(K) if placement else None
    table = validate(build(M, K), M, len(place) if place else K, placement=place)
    V = len(place) // K if place else 1
    on_units = simulate(table, K, UNIT_COSTS, placement=place)
    out = {
        "ticks": len(table),
        "bubble_ticks": simulate(table, K, ONE_TICK, placement=place).bubble(),
        "step_units": on_units.span,
        "bubble_units": on_units.bubble(),
        "peak_memory": peak_memory(table, K, costs=UNIT_COSTS, placement=place),
        "virtual": V,
        **_law(law, M, K, V),
    }
    if law == "gpipe":
        out.update(memory_remat=memory_units_rematerialized(N, L, M, K), memory_stored=memory_units_stored(N, L, K))
    return out


def _per_device(s: dict[str, Any]) -> str:
    """With V stages per device a unit is one stage's forward, 1/V of the device's share: say so, and convert."""
    V = s["virtual"]
    return f" stage units (= {s['step_units'] / V:g} in units of a device's whole forward, V={V})" if V > 1 else ""


def _title(s: dict[str, Any], K: int, M: int, N: int, L: int) -> str:
    held = ", ".join(f"{m:g}" for m in s["peak_memory"])
    lines = [f"K={K}, M={M}: {s['ticks']} ticks drawn (every action one tick, so a B counts as one although it is "
             f"an I and a W together)",
             f"at unit costs (F = I = W = 1, B = 2): step {s['step_units']:g}{_per_device(s)}, bubble "
             f"{s['bubble_units']:.3f}, peak micro-batches held per device [{held}]"
             + (f" (counted per stage, each 1/{s['virtual']} of the model)" if s["virtual"] > 1 else "")]
    if s.get("law"):
        law = ", ".join(f"{m:g}" for m in s["peak_law"])
        lines.append(f"{s['law']}'s own laws: step {s['step_law']:g}, bubble {s['bubble_law']:.3f}, "
                     f"peak per device [{law}]")
    else:
        lines.append(f"no closed form here: {s['why_no_law']}")
    if "memory_remat" in s:
        lines.append(f"GPipe's activations per stage: {s['memory_remat']:.0f} units with re-materialisation, "
                     f"{s['memory_stored']:.0f} without (N={N}, L={L})")
    return "\n".join(lines)


def draw_schedule(schedule_fn: ScheduleFn | str, K: int, M: int, ax: Any = None, N: int = 256, L: int = 24,
                  placement: PlacementFn | None = None, law: str | None = None) -> Any:
    """Gantt chart of ``schedule_fn(M, K)`` in clock ticks, titled with both clocks and its own laws."""
    build, placement, law = _resolve(schedule_fn, placement, law)
    place = placement(K) if placement else None
    table = validate(build(M, K), M, len(place) if place else K, placement=place)
    s = summary(lambda m, k: table, K, M, N, L, placement=placement, law=law)
    events = simulate(table, K, ONE_TICK, placement=place).events
    return draw_gantt(events, K, ax=ax, title=_title(s, K, M, N, L), unit="tick", labels=len(events) <= 256,
                      placement=place)


def explorer(schedule_fn: ScheduleFn | str = gpipe_schedule, K: int = 4, M: int = 4, max_K: int = 8,
             max_M: int = 32, N: int = 256, L: int = 24, placement: PlacementFn | None = None,
             law: str | None = None) -> Any:
    """Sliders for K and M that redraw ``schedule_fn``'s table; returns the widget box."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    k = w.IntSlider(value=K, min=1, max=max_K, description="K devices", continuous_update=False)
    m = w.IntSlider(value=M, min=1, max=max_M, description="M micro", continuous_update=False)
    out = w.Output()
    virtual = placement is not None or (isinstance(schedule_fn, str) and _resolve(schedule_fn, None, None)[1]
                                        is not None)

    def redraw(*_: Any) -> None:
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(11, 0.5 * k.value + 2.4))
            try:
                draw_schedule(schedule_fn, k.value, m.value, ax=ax, N=N, L=L, placement=placement, law=law)
                ax.title.set_wrap(True)
                plt.show()
            except Exception as exc:  # a learner's schedule may be wrong: say so in words, keep the sliders
                plt.close(fig)
                print(why_not_built(exc, k.value, m.value, virtual))

    k.observe(redraw, "value")
    m.observe(redraw, "value")
    redraw()
    return w.VBox([w.HBox([k, m]), out])

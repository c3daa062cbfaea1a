"""The K/M explorer: sliders that redraw a schedule's Gantt chart with its bubble and memory.

The drawing is a plain function (:func:`draw_schedule`) so it can be tested and
used without widgets; :func:`explorer` only wires ipywidgets sliders to it.
Any schedule function ``f(M, K) -> table`` works, a learner's included, and so
does a built-in's name (``"zb-h1"``, any key of :data:`gpipe_core.zoo.BUILTINS`).
Tables with virtual stages (several per device) need ``placement``, a function
``K -> placement`` as the built-ins have.

The chart is the table itself on a clock: every action takes one tick (F, B, I
and W alike), so a valid table is drawn exactly as it is written. Beside the
bubble the title gives each device's peak activation memory, from the same
simulator the book's explorer uses (:func:`gpipe_core.simulate.peak_memory`),
in micro-batches of one stage.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .schedule import Schedule, gpipe_schedule
from .simulate import Costs, peak_memory, simulate
from .theory import bubble_fraction, memory_units_rematerialized, memory_units_stored
from .trace import draw_gantt
from .validation import validate

ScheduleFn = Callable[[int, int], Schedule]
PlacementFn = Callable[[int], list[int]]
ONE_TICK = Costs(forward=1, backward=1, input_grad=1, weight_grad=1)
"""Every action one tick: the table's own clock."""


def in_grader() -> bool:
    """True while nbgrader executes the notebook: widgets and slow demos stay out of the way."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def _resolve(schedule_fn: ScheduleFn | str, placement: PlacementFn | None) -> tuple[ScheduleFn, PlacementFn | None]:
    if isinstance(schedule_fn, str):
        from .zoo import BUILTINS

        if schedule_fn not in BUILTINS:
            raise ValueError(f"unknown schedule {schedule_fn!r}: pick one of {sorted(BUILTINS)} or pass a function")
        builtin = BUILTINS[schedule_fn]
        return builtin.build, placement or (builtin.placement if builtin.virtual > 1 else None)
    return schedule_fn, placement


def summary(schedule_fn: ScheduleFn | str, K: int, M: int, N: int = 256, L: int = 24,
            placement: PlacementFn | None = None) -> dict[str, Any]:
    """Ticks and bubble read off the table, the formula's bubble, peak memory per device, the memory laws."""
    build, placement = _resolve(schedule_fn, placement)
    place = placement(K) if placement else None
    table = validate(build(M, K), M, len(place) if place else K, placement=place)
    trace = simulate(table, K, ONE_TICK, placement=place)
    return {
        "ticks": len(table),
        "bubble_table": trace.bubble(),
        "bubble_formula": bubble_fraction(M, K),
        "peak_memory": peak_memory(table, K, costs=ONE_TICK, placement=place),
        "memory_remat": memory_units_rematerialized(N, L, M, K),
        "memory_stored": memory_units_stored(N, L, K),
    }


def draw_schedule(schedule_fn: ScheduleFn | str, K: int, M: int, ax: Any = None, N: int = 256, L: int = 24,
                  placement: PlacementFn | None = None) -> Any:
    """Gantt chart of ``schedule_fn(M, K)`` in clock ticks, titled with its bubble and memory."""
    build, placement = _resolve(schedule_fn, placement)
    place = placement(K) if placement else None
    table = validate(build(M, K), M, len(place) if place else K, placement=place)
    s = summary(lambda m, k: table, K, M, N, L, placement=placement)
    held = ", ".join(f"{m:g}" for m in s["peak_memory"])
    title = (f"K={K}, M={M}: {s['ticks']} ticks, bubble {s['bubble_table']:.3f} "
             f"(GPipe's formula {s['bubble_formula']:.3f}); peak micro-batches held per device [{held}]; "
             f"GPipe's activations/stage {s['memory_remat']:.0f} units with re-materialisation vs "
             f"{s['memory_stored']:.0f} without (N={N}, L={L})")
    events = simulate(table, K, ONE_TICK, placement=place).events
    return draw_gantt(events, K, ax=ax, title=title, unit="tick", labels=len(events) <= 256, placement=place)


def explorer(schedule_fn: ScheduleFn | str = gpipe_schedule, K: int = 4, M: int = 4, max_K: int = 8,
             max_M: int = 32, N: int = 256, L: int = 24, placement: PlacementFn | None = None) -> Any:
    """Sliders for K and M that redraw ``schedule_fn``'s table; returns the widget box."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    k = w.IntSlider(value=K, min=1, max=max_K, description="K devices", continuous_update=False)
    m = w.IntSlider(value=M, min=1, max=max_M, description="M micro", continuous_update=False)
    out = w.Output()

    def redraw(*_: Any) -> None:
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(11, 0.5 * k.value + 1.8))
            try:
                draw_schedule(schedule_fn, k.value, m.value, ax=ax, N=N, L=L, placement=placement)
                ax.title.set_wrap(True)
                plt.show()
            except Exception as exc:  # a learner's schedule may be wrong: say so, keep the sliders
                plt.close(fig)
                print(f"{type(exc).__name__}: {exc}")

    k.observe(redraw, "value")
    m.observe(redraw, "value")
    redraw()
    return w.VBox([w.HBox([k, m]), out])

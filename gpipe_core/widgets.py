"""The K/M explorer: sliders that redraw a schedule's Gantt chart with its bubble and memory.

The drawing is a plain function (:func:`draw_schedule`) so it can be tested and
used without widgets; :func:`explorer` only wires ipywidgets sliders to it.
Any schedule function ``f(M, K) -> table`` works, a learner's included.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .schedule import Schedule, gpipe_schedule, validate
from .simulate import simulate
from .theory import bubble_fraction, memory_units_rematerialized, memory_units_stored
from .trace import draw_gantt

ScheduleFn = Callable[[int, int], Schedule]


def in_grader() -> bool:
    """True while nbgrader executes the notebook: widgets and slow demos stay out of the way."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def summary(schedule_fn: ScheduleFn, K: int, M: int, N: int = 256, L: int = 24) -> dict[str, float]:
    """Bubble read off the table, the formula's bubble, and the memory law per stage (in units)."""
    table = validate(schedule_fn(M, K), M, K)
    fwd = simulate(table, K)
    return {
        "ticks": len(table),
        "bubble_table": fwd.bubble(),
        "bubble_formula": bubble_fraction(M, K),
        "memory_remat": memory_units_rematerialized(N, L, M, K),
        "memory_stored": memory_units_stored(N, L, K),
    }


def draw_schedule(schedule_fn: ScheduleFn, K: int, M: int, ax: Any = None, N: int = 256, L: int = 24) -> Any:
    """Gantt chart of ``schedule_fn(M, K)`` in clock ticks, titled with its bubble and memory."""
    table = validate(schedule_fn(M, K), M, K)
    s = summary(lambda m, k: table, K, M, N, L)
    title = (f"K={K}, M={M}: {s['ticks']} ticks, bubble {s['bubble_table']:.3f} "
             f"(formula {s['bubble_formula']:.3f}); activations/stage {s['memory_remat']:.0f} units "
             f"with re-materialisation vs {s['memory_stored']:.0f} without (N={N}, L={L})")
    return draw_gantt(simulate(table, K).events, K, ax=ax, title=title, unit="tick", labels=M * K <= 128)


def explorer(schedule_fn: ScheduleFn = gpipe_schedule, K: int = 4, M: int = 4, max_K: int = 8,
             max_M: int = 32, N: int = 256, L: int = 24) -> Any:
    """Sliders for K and M that redraw ``schedule_fn``'s table; returns the widget box."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    k = w.IntSlider(value=K, min=1, max=max_K, description="K stages", continuous_update=False)
    m = w.IntSlider(value=M, min=1, max=max_M, description="M micro", continuous_update=False)
    out = w.Output()

    def redraw(*_: Any) -> None:
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(11, 0.5 * k.value + 1.6))
            try:
                draw_schedule(schedule_fn, k.value, m.value, ax=ax, N=N, L=L)
                plt.show()
            except Exception as exc:  # a learner's schedule may be wrong: say so, keep the sliders
                plt.close(fig)
                print(f"{type(exc).__name__}: {exc}")

    k.observe(redraw, "value")
    m.observe(redraw, "value")
    redraw()
    return w.VBox([w.HBox([k, m]), out])

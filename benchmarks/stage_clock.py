"""The instrument of metric 4: each thread's CPU clock read around every call the runtime makes into a stage.

The runtime's own cost is what a step costs outside the stages' calls, so the
benchmark needs those calls timed on the thread that makes them, and needs to
know what the timing itself adds. Kept apart from the benchmark so that the
instrument can be tested on its own and the rows read as what they measure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gpipe_core import GPipe

# The stage methods a runtime calls once per action; the split backward's halves are named as the engine names them.
STAGE_CALLS = ("forward", "backward", "backward_input", "backward_weight")


class StageClock:
    """CPU time that each thread spends inside the stages' calls, while installed.

    ``install`` wraps the instances' methods (the class stays untouched) and
    ``remove`` takes the wrappers off again, so the same pipe can be timed
    with and without them.
    """

    def __init__(self, stages: list[Any]) -> None:
        self.stages = stages
        self.spent: list[float] = []  # list.append is atomic: no lock on the hot path

    def install(self) -> StageClock:
        for stage in self.stages:
            for name in STAGE_CALLS:
                method = getattr(stage, name, None)
                if callable(method):
                    setattr(stage, name, self._wrap(method))
        return self

    def remove(self) -> None:
        for stage in self.stages:
            for name in STAGE_CALLS:
                if name in vars(stage):
                    delattr(stage, name)

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        clock, spent = time.thread_time, self.spent

        def timed(*args: Any, **kw: Any) -> Any:
            start = clock()
            out = method(*args, **kw)
            spent.append(clock() - start)
            return out

        return timed

    def take(self) -> tuple[float, int]:
        """Seconds inside stage calls, and the number of calls, since the last take."""
        out = (sum(self.spent), len(self.spent))
        self.spent.clear()
        return out


def stages_of(pipe: GPipe) -> list[Any]:
    """The pipe's Stage objects (the runtime's view of each model chunk)."""
    for owner in (pipe, getattr(pipe, "_runtime", None), getattr(pipe, "runtime", None)):
        for name in ("stages", "_stages"):
            stages = getattr(owner, name, None)
            if stages:
                return list(stages)
    raise AttributeError("cannot find the pipe's Stage objects (pipe.stages, pipe._stages or pipe._runtime.stages): "
                         "update benchmarks/stage_clock.stages_of to the engine's current layout")


def instrument_floor(calls: int = 2000, rounds: int = 5) -> float:
    """Seconds a wrapper adds to one stage call, on an empty method (the best of a few rounds)."""
    holder = type("Empty", (), {"forward": lambda self: None})()
    clock = StageClock([holder])
    best = float("inf")
    for _ in range(rounds):
        start = time.thread_time()
        for _ in range(calls):
            holder.forward()
        bare = time.thread_time() - start
        clock.install()
        start = time.thread_time()
        for _ in range(calls):
            holder.forward()
        wrapped = time.thread_time() - start
        clock.remove()
        clock.take()
        best = min(best, max(0.0, wrapped - bare) / calls)
    return best

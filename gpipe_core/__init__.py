"""gpipe_core: a small, real GPipe engine.

One idea carries it: a schedule is data. The partitioner balances layers over
K stages, the scheduler writes the clock-tick table, the runtime executes the
table on real workers (CPU threads or CUDA streams), and the trace draws what
happened as the same table in wall-clock time.

    >>> from gpipe_core import GPipe
    >>> pipe = GPipe(model, partitions=4, chunks=8)      # model: nn.Sequential; K=4 devices, M=8
    >>> loss = pipe.step(x, y, torch.nn.functional.cross_entropy)
    >>> optimizer.step()                                   # .grad as the full batch leaves it

The parts live in sub-packages: ``engine/`` (what runs a step), ``schedules/``
(tables as data), ``sim/`` (predicting a step), ``workloads/`` (what is
trained) and ``course/`` (experiments, widgets, puzzles); ``distributed/``
runs tables on torch.distributed. The flat paths notebooks import
(``gpipe_core.zoo``) still resolve, to the same modules (``_course_paths``).
"""

from types import ModuleType

from . import _course_paths
from .engine.checkpoint import Recompute, StoreActivations, is_recomputing
from .engine.common import StageError
from .engine.partition import balance_by_cost, balance_by_count, balance_by_size, balance_by_time, split_module
from .engine.pipe import GPipe
from .engine.reference import sequential_step
from .engine.trace import Event, Trace
from .schedules.schedule import Action, Overlap, ScheduleError, gpipe_schedule, one_f_one_b_schedule
from .schedules.validation import render, validate
from .sim.simulate import Costs, simulate
from .sim.theory import bubble_fraction, ideal_speedup

__all__ = [
    "Action", "Costs", "Event", "GPipe", "Overlap", "Recompute", "ScheduleError", "StageError", "StoreActivations",
    "Trace", "balance_by_cost", "balance_by_count", "balance_by_size", "balance_by_time",
    "bubble_fraction", "gpipe_schedule", "ideal_speedup", "is_recomputing", "one_f_one_b_schedule", "render",
    "sequential_step", "simulate", "split_module", "validate",
]
__version__ = "0.1.0"

_course_paths.install()


def __getattr__(name: str) -> ModuleType:
    """``gpipe_core.zoo`` after a bare ``import gpipe_core``, as before the grouping (see ``_course_paths``)."""
    if name in _course_paths.MOVED:
        return _course_paths.resolve(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""gpipe_core: a small, real GPipe engine.

One idea carries it: a schedule is data. The partitioner balances layers over
K stages, the scheduler writes the clock-tick table, the runtime executes the
table on real workers (CPU threads or CUDA streams), and the trace draws what
happened as the same table in wall-clock time.

    >>> from gpipe_core import GPipe
    >>> pipe = GPipe(model, partitions=4, chunks=8)      # model: nn.Sequential; K=4 devices, M=8
    >>> loss = pipe.step(x, y, torch.nn.functional.cross_entropy)
    >>> optimizer.step()                                   # .grad as the full batch leaves it
"""

from .checkpoint import Recompute, StoreActivations, is_recomputing
from .common import StageError
from .partition import balance_by_cost, balance_by_count, balance_by_size, balance_by_time, split_module
from .pipe import GPipe
from .reference import sequential_step
from .schedule import Action, Overlap, ScheduleError, gpipe_schedule, one_f_one_b_schedule
from .simulate import Costs, simulate
from .theory import bubble_fraction, ideal_speedup
from .trace import Event, Trace
from .validation import render, validate

__all__ = [
    "Action", "Costs", "Event", "GPipe", "Overlap", "Recompute", "ScheduleError", "StageError", "StoreActivations",
    "Trace", "balance_by_cost", "balance_by_count", "balance_by_size", "balance_by_time",
    "bubble_fraction", "gpipe_schedule", "ideal_speedup", "is_recomputing", "one_f_one_b_schedule", "render",
    "sequential_step", "simulate", "split_module", "validate",
]
__version__ = "0.1.0"

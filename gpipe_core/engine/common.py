"""Names every part of the engine shares, kept apart so no part imports another for them.

The runtime, the stages, the distributed bridge and the reports all speak of
a loss function, of a failing stage and of how many threads a CPU worker
gets; the partitioner, the micro-batcher, the schedules and the wrapper all
ask whether a count (K, M, V, a balance entry) is a positive integer, and one
function answers them all, so numpy's integers count everywhere or nowhere.
Defining those here keeps the dependency graph a tree: nothing has to import
the thread runtime just to name its error.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

LossFn = Callable[[Any, Tensor], Tensor]

KIND_NAMES = {"F": "forward", "B": "backward", "I": "input-gradient backward", "W": "weight-gradient backward"}


class StageError(RuntimeError):
    """An exception raised inside a stage, with the stage and the action named."""

    def __init__(self, stage: int, action: Any, cause: BaseException) -> None:
        super().__init__(
            f"stage {stage} failed in the {KIND_NAMES.get(action.kind, action.kind)} of micro-batch "
            f"{action.microbatch}: {type(cause).__name__}: {cause}"
        )
        self.stage, self.action = stage, action


@dataclass(frozen=True)
class Loss:
    """What the last stage needs to turn its output into micro-batch i's share of the loss."""

    fn: LossFn
    targets: list[Tensor]
    weights: list[float]

    def of(self, output: Any, microbatch: int) -> Tensor:
        return self.fn(output, self.targets[microbatch]) * self.weights[microbatch]


def default_threads(workers: int) -> int:
    """Intra-op threads per CPU worker: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is a positive integer of any integer type (numpy's too), a bool excepted."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1


def positive_int(value: object, name: str) -> int:
    """``value`` as an int, or a ValueError naming ``name`` and what to give instead."""
    if not is_positive_int(value):
        raise ValueError(f"{name} must be a positive integer, got {value!r}: give a whole number of 1 or more")
    return int(value)  # type: ignore[call-overload]

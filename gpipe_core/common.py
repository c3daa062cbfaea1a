"""Names every part of the engine shares, kept apart so no part imports another for them.

The runtime, the stages, the distributed bridge and the reports all speak of
a loss function, of a failing stage and of how many threads a CPU worker
gets. Defining those here keeps the dependency graph a tree: nothing has to
import the thread runtime just to name its error.
"""

from __future__ import annotations

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

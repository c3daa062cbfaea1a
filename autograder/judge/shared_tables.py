"""What the schedule judges share: a learner's table checked before use, and a step checked against the model.

Assignments 03 (the scheduler) and 07 (the schedules after GPipe) both take a
table from learner code and both run tables on the engine. A table is used
only once it is a plain list of lists of exact ``Action`` objects that the
validator accepts; a step counts only if its loss and gradients equal the
sequential model's on the same micro-batches with the same dropout seeds.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from gpipe_core import ScheduleError, sequential_step, validate
from gpipe_core.schedules.schedule import Action

from .base import Failed, close, expect, same_grads
from .probe_codec import Foreign


def learner_table(got: object, M: int, K: int, placement: list[int] | None, what: str) -> list[list[Action]]:
    """``got`` as a validated table, or :class:`Failed` naming what is wrong with it."""
    expect(type(got) is list and all(type(t) is list for t in got),
           f"{what}: a schedule is a list of ticks, each tick a list of Action(kind, microbatch, stage); "
           f"got {type(got).__name__}")
    bad = [a for t in got for a in t if type(a) is not Action or isinstance(a, Foreign)]
    expect(not bad, f"{what}: a tick holds {bad[:1]!r}, not an Action")
    try:
        return validate(got, M, K, placement)
    except ScheduleError as exc:
        raise Failed(f"{what}: your table cannot run: {exc}") from None


def matches_sequential(loss: Any, grads: Any, ref: nn.Sequential, x: Tensor, y: Tensor, balance: list[int], M: int,
                       seed: int, where: str) -> None:
    """A pipelined step's loss and gradients against ``ref`` (the same model, untouched) run sequentially."""
    want = sequential_step(ref, x, y, nn.functional.cross_entropy, balance=balance, chunks=M, seed=seed)
    close(loss, want, f"{where}: the loss (against the sequential model's)", rtol=1e-5, atol=0)
    same_grads(grads, [p.grad for p in ref.parameters()], [n for n, _ in ref.named_parameters()], where)

"""Schedules to and from PyTorch's own action lists (``torch.distributed.pipelining``'s schedule IR).

PyTorch writes each schedule as one list of actions per rank: ``_Action(stage_index,
computation_type, microbatch_index)`` with compute kinds F, B, I, W (and, for
DualPipeV, OVERLAP_F_B: a forward and a backward run together, our
:class:`~gpipe_core.schedules.actions.Overlap` cell) and, once
lowered, sends, receives and gradient reductions. That is our table read row by
row, so the two translate:

* :func:`import_torch` asks torch for a schedule class's lists without a
  process group (``_schedule_visualizer.get_schedule_ops``, which torch keeps
  for drawing), keeps the compute actions (sends and receives become our
  dependencies, which the walker enforces), infers the placement from which
  rank runs which stage, places each rank's order on ticks with the one walker
  and runs our validator. A schedule that does not pass is reported with the
  offending action.
* :func:`to_torch` and :func:`write_csv` go the other way, for torch's runtime
  (``_PipelineScheduleRuntime``): see :mod:`gpipe_core.distributed.export`.

These are torch internals (underscored names). The package imports on any
torch >= 2.4; these functions check what they need and say which torch has it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..schedules.actions import Cell, Overlap, actions_of, flatten
from ..schedules.schedule import Action, Schedule, ScheduleError, check_placement, device_orders, ticks_from_orders
from ..schedules.validation import validate
from ..sim.simulate import UNIT, peak_memory, simulate

COMPUTE = {"F": "F", "B": "B", "I": "I", "W": "W"}


def _internals() -> tuple[Any, Any]:
    """torch's schedules module and get_schedule_ops, or an error naming what this torch lacks."""
    try:
        from torch.distributed.pipelining import schedules
        from torch.distributed.pipelining._schedule_visualizer import get_schedule_ops
    except ImportError as exc:
        raise RuntimeError(
            f"importing torch's schedules needs torch.distributed.pipelining._schedule_visualizer.get_schedule_ops "
            f"and schedules._Action (torch 2.8 or newer; tested on 2.13); this is torch {torch.__version__} "
            f"({exc}). Upgrade torch, or use gpipe_core.schedules.zoo's built-in tables") from None
    return schedules, get_schedule_ops


def torch_schedule_classes() -> dict[str, type]:
    """Every concrete schedule class the installed torch exports, by name."""
    schedules, _ = _internals()
    bases = {"PipelineScheduleSingle", "PipelineScheduleMulti", "_PipelineScheduleRuntime"}
    found = {}
    for name in getattr(schedules, "__all__", dir(schedules)):
        obj = getattr(schedules, name, None)
        if inspect.isclass(obj) and issubclass(obj, schedules._PipelineSchedule) and name not in bases \
                and not inspect.isabstract(obj):
            found[name] = obj
    return found


def is_multi(cls: type) -> bool:
    """True for torch's schedules with several stages per rank (they take V >= 2)."""
    schedules, _ = _internals()
    return issubclass(cls, schedules.PipelineScheduleMulti)


@dataclass
class Imported:
    """A torch schedule read into our terms; ``error`` is None when our validator accepts it."""

    name: str
    K: int
    M: int
    V: int
    placement: list[int] = field(default_factory=list)
    orders: list[list[Cell]] = field(default_factory=list)
    table: Schedule | None = None
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.error is None and self.table is not None


def actions_from_torch(ops: Sequence[Sequence[Any]]) -> list[list[Cell]]:
    """Each rank's compute actions as our cells, in order; OVERLAP_F_B becomes an :class:`Overlap` cell."""
    orders: list[list[Cell]] = []
    for rank_ops in ops:
        order: list[Cell] = []
        for op in rank_ops:
            if op is None:
                continue
            parts = [Action(COMPUTE[str(p.computation_type.value)], p.microbatch_index, p.stage_index)  # type: ignore[arg-type]
                     for p in getattr(op, "sub_actions", None) or (op,) if str(p.computation_type.value) in COMPUTE]
            if getattr(op, "sub_actions", None) and len(parts) == 2 and parts[0].kind == "F":
                order.append(Overlap(parts[0], parts[1]))
            else:
                order.extend(parts)
        orders.append(order)
    return orders


def placement_of(orders: Sequence[Sequence[Cell]]) -> list[int]:
    """The device (rank) of each stage, from which rank's list runs it; a stage on two ranks is an error."""
    where: dict[int, int] = {}
    for d, order in enumerate(orders):
        for a in flatten([order]):
            if where.setdefault(a.stage, d) != d:
                raise ScheduleError(f"{a} appears on ranks {where[a.stage]} and {d}: a stage lives on one device")
    S = 1 + max(where, default=-1)
    missing = [s for s in range(S) if s not in where]
    if missing:
        raise ScheduleError(f"stages {missing} never run: every stage 0..{S - 1} needs actions")
    return check_placement([where[s] for s in range(S)], S)


def from_orders(name: str, orders: list[list[Cell]], M: int, V: int) -> Imported:
    """Validate per-rank orders as a table: range, placement, deadlock (walker), then the full validator."""
    out = Imported(name, len(orders), M, V, orders=orders)
    try:
        for d, order in enumerate(orders):
            for a in flatten([order]):
                if not 0 <= a.microbatch < M:
                    raise ScheduleError(f"{a} on rank {d} is out of range: micro-batches are 0..{M - 1}")
        out.placement = placement_of(orders)
        out.table = validate(ticks_from_orders(orders, out.placement), M, len(orders), out.placement)
    except ScheduleError as exc:
        out.table, out.error = None, str(exc).split("\n")[0]
    return out


def import_torch(schedule: str | type, K: int, M: int, V: int | None = None) -> Imported:
    """Read torch's schedule class (or its name, e.g. 'ScheduleZBVZeroBubble') for K ranks and M micro-batches.

    ``V`` stages per rank applies to torch's multi-stage schedules (default 2);
    single-stage ones take V = 1.
    """
    _, get_schedule_ops = _internals()
    classes = torch_schedule_classes()
    cls = classes.get(schedule, schedule) if isinstance(schedule, str) else schedule
    if not inspect.isclass(cls):
        raise ValueError(f"unknown torch schedule {schedule!r}: this torch has {sorted(classes)}")
    V = (2 if is_multi(cls) else 1) if V is None else V
    try:
        ops = get_schedule_ops(cls, K, M, num_stages_per_rank=V)
    except Exception as exc:  # torch refuses the sizes (e.g. M not a multiple of K): report, do not crash
        return Imported(cls.__name__, K, M, V, error=f"torch refuses K={K}, M={M}, V={V}: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return from_orders(cls.__name__, actions_from_torch(ops), M, V)


def unit_summary(imported: Imported) -> dict[str, Any]:
    """Ticks, unit-cost step time (F = I = W = 1, B = 2), bubble and peak held per device of a valid import."""
    if not imported.valid:
        return {"name": imported.name, "K": imported.K, "M": imported.M, "V": imported.V, "valid": False,
                "error": imported.error}
    table, K, placement = imported.table, imported.K, imported.placement
    assert table is not None
    trace = simulate(table, K, UNIT, placement=placement)
    return {"name": imported.name, "K": K, "M": imported.M, "V": imported.V, "valid": True, "ticks": len(table),
            "step": trace.span, "bubble": trace.bubble(),
            "held": [int(h) for h in peak_memory(table, K, costs=UNIT, placement=placement)]}


def survey(K: int, M: int, V: int = 2) -> list[dict[str, Any]]:
    """Every torch schedule class at K ranks and M micro-batches (V stages per rank for the multi-stage ones)."""
    return [unit_summary(import_torch(cls, K, M, V if is_multi(cls) else 1))
            for cls in torch_schedule_classes().values()]


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A survey as a markdown table."""
    lines = ["| torch class | K | M | V | validates | ticks | step (units) | bubble | peak held per device |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["valid"]:
            lines.append(f"| {r['name']} | {r['K']} | {r['M']} | {r['V']} | yes | {r['ticks']} | {r['step']:g} | "
                         f"{r['bubble']:.3f} | {r['held']} |")
        else:
            lines.append(f"| {r['name']} | {r['K']} | {r['M']} | {r['V']} | no: {r['error']} | | | | |")
    return "\n".join(lines)


def to_torch(table: Sequence[Sequence[Cell]], placement: Sequence[int]) -> dict[int, list[Any]]:
    """Our table as torch's compute-only IR: rank -> its actions in tick order (``_Action`` tuples).

    An overlapped F&B becomes ``_Action(-1, OVERLAP_F_B, None, (forward, backward))``, as torch's DualPipeV
    writes it."""
    schedules, _ = _internals()
    kinds = {"F": schedules.FORWARD, "B": schedules.FULL_BACKWARD, "I": schedules.BACKWARD_INPUT,
             "W": schedules.BACKWARD_WEIGHT}
    if not hasattr(schedules, "OVERLAP_F_B") and any(isinstance(c, Overlap) for tick in table for c in tick):
        raise RuntimeError(f"this table has overlapped F&B cells, and torch {torch.__version__} has no OVERLAP_F_B "
                           "action (it came with ScheduleDualPipeV; tested on torch 2.13). Upgrade torch, or "
                           "run the table on gpipe_core.GPipe")

    def one(cell: Cell) -> Any:
        parts = tuple(schedules._Action(a.stage, kinds[a.kind], a.microbatch) for a in actions_of(cell))
        return schedules._Action(-1, schedules.OVERLAP_F_B, None, parts) if isinstance(cell, Overlap) else parts[0]

    return {d: [one(c) for c in order] for d, order in enumerate(device_orders(table, list(placement)))}


def write_csv(table: Sequence[Sequence[Action]], placement: Sequence[int], path: str) -> None:
    """Our table in torch's compute-only CSV (one row per rank, cells like ``2I5``), for ``_load_csv``."""
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        for _, actions in sorted(to_torch(table, placement).items()):
            writer.writerow([str(a) for a in actions])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gpipe_core.distributed.torch_ir -K 4 -M 8 [-V 2]``: the survey as a markdown table."""
    import argparse

    parser = argparse.ArgumentParser(description="torch's pipeline schedules through gpipe_core's validator")
    parser.add_argument("-K", type=int, default=4, help="ranks (devices)")
    parser.add_argument("-M", type=int, default=8, help="micro-batches")
    parser.add_argument("-V", type=int, default=2, help="stages per rank of the multi-stage schedules")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, unit costs F = I = W = 1, B = 2 (chunk units when V > 1)")
    print(markdown(survey(args.K, args.M, args.V)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

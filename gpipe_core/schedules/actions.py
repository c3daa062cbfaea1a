"""The cells of a schedule table: one action, or an overlapped forward and backward.

Why a module of its own: every part of the engine reads tables (the
validator, the walker, the runtime, the simulator, the exporters), so the
vocabulary of a cell sits below all of them and imports nothing.

A cell is usually one :class:`Action`: ``kind`` (F, B, I or W) of micro-batch
``microbatch`` on stage ``stage``. DualPipe and DualPipeV (DeepSeek-V3) add a
second kind of cell, the overlapped F&B (:class:`Overlap`; torch's
``OVERLAP_F_B``): the forward of one micro-batch and the backward (B or I) of
another, on two stages of the same device, issued together so that one's
communication hides behind the other's computation. It occupies its device
for one cell; each of its two actions still runs once and keeps its own
dependencies, and both count as finished when the cell is. Code that wants
actions rather than cells calls :func:`actions_of` or :func:`flatten`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

Kind = Literal["F", "B", "I", "W"]
KINDS = ("F", "B", "I", "W")


@dataclass(frozen=True, order=True)
class Action:
    """One cell of the table: ``kind`` (F, B, I or W) of micro-batch ``microbatch`` on stage ``stage``."""

    kind: Kind
    microbatch: int
    stage: int

    def __str__(self) -> str:
        return f"{self.kind}{self.microbatch}@stage{self.stage}"


@dataclass(frozen=True)
class Overlap:
    """An overlapped F&B cell: ``forward`` (an F) and ``backward`` (a B or an I) run together on one device.

    torch.distributed.pipelining writes it as ``_Action(-1, OVERLAP_F_B, None, (forward, backward))``.
    Our runtime issues the forward, then the backward, from the device's worker: on a CUDA device each
    stage has its own stream, so the GPU can run the two at once (not yet measured on a GPU); on a CPU
    worker they run one after the other.
    """

    forward: Action
    backward: Action
    kind: ClassVar[str] = "F&B"

    @property
    def actions(self) -> tuple[Action, Action]:
        return (self.forward, self.backward)

    @property
    def stage(self) -> int:
        """The forward's stage: the cell's device is that stage's (the backward's is the same device)."""
        return self.forward.stage

    def __str__(self) -> str:
        return f"({self.forward} & {self.backward})"


Cell = Action | Overlap


def actions_of(cell: Cell) -> tuple[Action, ...]:
    """The actions a cell runs: itself, or an overlap's forward and backward."""
    return cell.actions if isinstance(cell, Overlap) else (cell,)


def flatten(schedule: Iterable[Iterable[Cell]]) -> Iterator[Action]:
    """Every action of a table (or of per-device orders), in order, overlaps opened."""
    for row in schedule:
        for cell in row:
            yield from actions_of(cell)


def label(cell: Cell, virtual: bool = False) -> str:
    """A cell as the text table draws it: ``F3``, ``F3:5`` with virtual stages, ``F3&B1`` for an overlap."""
    return "&".join(f"{a.kind}{a.microbatch}" + (f":{a.stage}" if virtual else "") for a in actions_of(cell))


def overlap_error(cell: Overlap, placement: Sequence[int]) -> str | None:
    """Why ``cell`` is not a valid overlapped F&B, or None when it is."""
    f, b = cell.forward, cell.backward
    if not (isinstance(f, Action) and isinstance(b, Action)):
        return f"{cell} must pair two Actions: Overlap(Action('F', i, s), Action('B', j, t))"
    if f.kind != "F" or b.kind not in ("B", "I"):
        return f"{cell} must pair a forward with a backward (B or I): Overlap(F..., B...) in that order"
    if (f.microbatch, f.stage) == (b.microbatch, b.stage):
        return (f"{cell} pairs the forward and the backward of one micro-batch on one stage: the backward needs "
                "that forward's result, so overlap it with another micro-batch's forward")
    if all(0 <= a.stage < len(placement) for a in (f, b)) and placement[f.stage] != placement[b.stage]:
        return (f"{cell} pairs stages on devices {placement[f.stage]} and {placement[b.stage]}: an overlapped "
                "F&B runs on one device, so both stages must be placed there")
    return None

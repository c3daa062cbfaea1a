"""Communication between devices: what a hop costs, in the simulator and, injected, in the engine.

Why a model of its own: a bubble or a memory figure means little until one
says under which costs it was computed, and the link between devices is the
cost the schedule papers state most differently (the zero-bubble paper
counts it inside its F, B and W times; DualPipe hides it behind an overlapped
F&B). So the simulator takes it as a setting, and the engine can be made to
pay exactly that setting, which is how ``benchmarks/comm.py`` checks the one
against the other.

The model (:class:`Comm`):

* a *message* crosses each stage boundary twice per micro-batch: stage s's
  output goes forward to stage s+1, and the gradient of that output comes
  back from s+1 (the same bytes, ``message[s]``);
* a hop between two devices costs ``latency + bytes / bandwidth``; a hop
  between two stages of one device (the tip of a V, or any stages a placement
  puts together) is free: the tensor stays where it is;
* ``overlap=True``: the send runs beside compute (its own stream or thread):
  the sender goes on at once and the message arrives one hop later;
  ``overlap=False``: the sender waits for its send to finish before its next
  action (a blocking send), and the message arrives as the sender is freed;
* no contention: a link carries any number of messages at once (schedules of
  one action per device per tick have at most one message per direction in
  flight on a link most of the time; a model that queues them would need the
  link's real protocol, which this one does not claim to know).

The engine side: :func:`inject` gives a :class:`~gpipe_core.engine.pipe.GPipe` a
``link`` (see :mod:`gpipe_core.engine.mailbox`) that sleeps out each hop, on the
sender's thread for a blocking send, on the receiver's (until the message's
arrival time) for an overlapped one, with the bytes of the tensor really sent
(``message`` is the simulator's count of them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..engine.tensors import as_tuple
from ..schedules.actions import Action

PerBoundary = Sequence[float] | float


@dataclass(frozen=True)
class Comm:
    """A hop between devices costs ``latency + bytes / bandwidth`` (time units of the costs; bytes per unit).

    ``message``: the bytes crossing boundary s (stage s's output, and its gradient coming back); one number
    for every boundary. ``overlap``: sends run beside compute (True) or the sender waits for them (False).
    """

    latency: float = 0.0
    bandwidth: float = math.inf
    message: PerBoundary = 0.0
    overlap: bool = True

    def __post_init__(self) -> None:
        if self.latency < 0 or not self.bandwidth > 0:
            raise ValueError(f"Comm needs latency >= 0 and bandwidth > 0 (got latency={self.latency}, "
                             f"bandwidth={self.bandwidth}): use bandwidth=math.inf for a link without a size cost")

    def seconds(self, nbytes: float) -> float:
        """What a hop of ``nbytes`` between two devices takes."""
        return self.latency + (0.0 if math.isinf(self.bandwidth) else nbytes / self.bandwidth)

    def hop(self, boundary: int) -> float:
        """What the message across boundary ``boundary`` (between stages s and s+1) takes between devices."""
        size = self.message if isinstance(self.message, (int, float)) else self.message[boundary]
        return self.seconds(float(size))


def receiver(action: Action, S: int) -> int | None:
    """The stage ``action`` sends its result to: F forward to s+1, B or I back to s-1; None if it sends nothing."""
    if action.kind == "F":
        return action.stage + 1 if action.stage < S - 1 else None
    if action.kind in ("B", "I"):
        return action.stage - 1 if action.stage > 0 else None
    return None


def send_cost(action: Action, comm: Comm | None, placement: Sequence[int]) -> float:
    """How long ``action``'s message takes on the wire: 0 without one, or when it stays on its device."""
    to = receiver(action, len(placement))
    if comm is None or to is None or placement[to] == placement[action.stage]:
        return 0.0
    return comm.hop(min(to, action.stage))


@dataclass(frozen=True)
class Hop:
    """One message between devices in a simulated step: sent at ``depart``, usable from ``arrive``."""

    sender: Action
    receiver: Action
    depart: float
    arrive: float


def hops(when: dict[Action, tuple[float, float]], comm: Comm | None, placement: Sequence[int]) -> list[Hop]:
    """Every message between two devices of a timeline (:func:`gpipe_core.sim.simulate.times`), in departure order.

    A message departs when its sender's computation ends and arrives one hop later (whether or not the
    sender waited for it); with no ``comm`` a hop takes no time but is still listed.
    """
    out = []
    for a, (_, end) in when.items():
        to = receiver(a, len(placement))
        if to is None or placement[to] == placement[a.stage]:
            continue
        kind = a.kind if a.kind == "F" else ("I" if Action("I", a.microbatch, to) in when else "B")
        out.append(Hop(a, Action(kind, a.microbatch, to), end, end + send_cost(a, comm, placement)))  # type: ignore[arg-type]
    return sorted(out, key=lambda h: (h.depart, h.sender))


def inject(pipe: Any, comm: Comm | None) -> None:
    """Make ``pipe`` (a GPipe) pay ``comm`` on every hop between two of its devices; None removes it.

    Each message waits ``comm.seconds(bytes)`` for the bytes of the tensors really sent (a hop inside one
    device is free), on the sender's thread when ``comm.overlap`` is False, else in flight. For a timing to
    mean anything every device needs a worker of its own: build the pipe with ``executor="ranks"``.
    """
    placement = list(pipe.placement)
    runtime = pipe._runtime  # noqa: SLF001 - the runtime's hook; GPipe has no public handle for it

    def link(src: int, dst: int, value: Any) -> tuple[float, bool]:
        if placement[src] == placement[dst]:
            return 0.0, False
        nbytes = sum(t.numel() * t.element_size() for t in as_tuple(value) if hasattr(t, "element_size"))
        return comm.seconds(nbytes), not comm.overlap  # type: ignore[union-attr]

    runtime.link = None if comm is None else link

"""Messages between workers, and a wake-up only where it pays for itself.

A step's messages are keyed by kind, micro-batch and receiving stage: a
forward output goes to the next stage, an input gradient to the previous one.
:class:`Post` routes each: to the receiver's stash when one worker runs both
stages (no queue, no lock), else to the receiving worker's :class:`Inbox`. On
CUDA a message carries an event recorded after the tensor was produced (and
copied to the receiver's device); the receiver's stream waits on it, so the
host never blocks on the GPU.

A worker that waits for a message sleeps. Waking it costs far more than
putting the message down: a system call, the sleeper's trip back through the
scheduler, then a fight for the GIL with the worker that woke it (tens of
microseconds of CPU on a laptop). Stages of a real model take milliseconds,
so a wake per message is nothing. Stages of a toy model on a CPU take a few
microseconds, and a wake per message costs more than the work it enables.

So delivery and waking are separate here. :meth:`Outbox.send` puts the
message in the receiver's :class:`Inbox` at once, but a CPU worker whose next
action is shorter than ``short`` holds the wake-up back and rings once for
several messages. "Shorter" means by the shortest time that stage and kind
took in the last step (the shortest, because a tiny action that waited for
the GIL says nothing about itself). The sender rings what it holds before it
waits itself, before an action that is not short (its last action has no
next one, so it always rings), once its held time plus its next action would
pass ``budget``, and on abort. A receiver is thus always woken, at most
about ``budget`` late (one action later where an action outlasts its
estimate). Untimed actions, actions of ``short`` or more and CUDA workers
(whose host time says nothing of the device's) ring at once: real models run
exactly as with a wake per message.

A ``link`` (a benchmark's and a test's hook, :mod:`gpipe_core.sim.comm`) delays
each message: ``link(src, dst, value)`` gives the seconds a hop from stage
``src`` to ``dst`` takes and whether the sender waits them out (a blocking
send) or the message simply arrives that much later (a send beside compute).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import tensors

SHORT_ACTION = 100e-6  # an action this short does not pay for waking another worker (a few wake-ups' CPU)
HOLD_BUDGET = 1e-3  # seconds a sender may sit on a wake-up
_ABORT = object()
Link = Callable[[int, int, Any], "tuple[float, bool]"]  # (src stage, dst stage, value) -> (seconds, sender waits)


class Aborted(Exception):
    """Raised in a worker waiting for a message when the step is being stopped."""


class Inbox:
    """One worker's messages: a deque anyone appends to, and a bell its owner sleeps on when it is empty."""

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self._guard = threading.Lock()  # orders "owner goes to sleep" against "a sender rings"
        self._bell = threading.Lock()
        self._bell.acquire()
        self._sleeping = False

    def put(self, message: Any) -> None:
        self.items.append(message)  # atomic in CPython: no lock needed to deliver

    def ring(self) -> None:
        """Wake the owner if it sleeps: the bell is released at most once per sleep."""
        with self._guard:
            if self._sleeping:
                self._sleeping = False
                self._bell.release()

    def get(self) -> Any:
        """The oldest message, sleeping until one is there."""
        items = self.items
        while True:
            if items:
                return items.popleft()
            with self._guard:  # a sender that appends after this check rings after we set the flag
                if items:
                    continue
                self._sleeping = True
            self._bell.acquire()


class Outbox:
    """One worker's sending side: delivers at once, rings now or a little later."""

    def __init__(self, boxes: Sequence[Inbox], short: float | None = None, budget: float | None = None) -> None:
        self.boxes = boxes
        self.short = SHORT_ACTION if short is None else short  # read when built: a benchmark may set it to 0
        self.budget = HOLD_BUDGET if budget is None else budget
        self.held: set[int] = set()
        self.since = 0.0
        self.next_cost = float("inf")  # expected seconds of this worker's next action; set by the walker

    def send(self, worker: int, message: Any, may_hold: bool) -> None:
        box = self.boxes[worker]
        box.put(message)
        if may_hold and self.next_cost < self.short:
            if not self.held:
                self.since = time.perf_counter()
            self.held.add(worker)
        else:
            box.ring()

    def tick(self, now: float) -> None:
        """Between two actions: ring what is held unless the next action is short and stays within the budget."""
        if self.held and (self.next_cost >= self.short or now - self.since + self.next_cost >= self.budget):
            self.flush()

    def flush(self) -> None:
        for worker in self.held:
            self.boxes[worker].ring()
        self.held.clear()



class Post:
    """One step's messages between the stages of ``worker_of_stage``'s workers."""

    def __init__(self, worker_of_stage: Sequence[int], workers: int, link: Link | None = None) -> None:
        self.worker_of_stage, self.link = worker_of_stage, link
        self.inbox = [Inbox() for _ in range(workers)]
        self.outbox = [Outbox(self.inbox) for _ in range(workers)]
        self.stash: list[dict[tuple[str, int, int], Any]] = [{} for _ in range(workers)]

    def send(self, src: Any, dst: Any, kind: str, i: int, value: Any) -> None:
        """Stage ``src`` sends ``value`` (kind ``"F"`` or ``"G"``, micro-batch ``i``) to stage ``dst``."""
        event = None
        if src.stream is None and dst.stream is None:  # CPU to CPU: the common case, nothing to copy or record
            if dst.device != src.device:
                value = tensors.to(value, dst.device)
        else:
            if value is not None and dst.device != src.device:
                value = tensors.to(value, dst.device, non_blocking=src.stream is not None and dst.stream is not None)
            if src.stream is not None:
                event = torch.cuda.Event()
                event.record(src.stream)
        ready = 0.0  # when the message may be read (perf_counter seconds); 0: at once
        if self.link is not None:
            delay, waits = self.link(src.index, dst.index, value)
            if delay > 0 and waits:
                time.sleep(delay)
            elif delay > 0:
                ready = time.perf_counter() + delay
        w, mine = self.worker_of_stage[dst.index], self.worker_of_stage[src.index]
        if w == mine:
            self.stash[w][kind, i, dst.index] = (value, event, ready)
        else:
            self.outbox[mine].send(w, ((kind, i, dst.index), value, event, ready),
                                   may_hold=src.stream is None and dst.stream is None)

    def recv(self, w: int, stage: Any, kind: str, i: int) -> Any:
        """The message for ``stage`` on worker ``w``, waiting for it if needed; :class:`Aborted` if stopped."""
        stash, key = self.stash[w], (kind, i, stage.index)
        if key in stash:
            value, event, ready = stash.pop(key)
        else:
            inbox, outbox = self.inbox[w], self.outbox[w]  # only a worker among several ever gets here
            while True:
                if outbox.held and not inbox.items:
                    outbox.flush()  # about to sleep: first ring what this worker held back
                message = inbox.get()
                if message is _ABORT:
                    raise Aborted
                if message[0] == key:  # messages mostly come in the order they are wanted: no stash round trip
                    _, value, event, ready = message
                    break
                stash[message[0]] = message[1:]
        if ready and ready > time.perf_counter():  # a delayed hop (``link``) is still on its way
            time.sleep(ready - time.perf_counter())
        if event is not None and stage.stream is not None:
            stage.stream.wait_event(event)
            for t in tensors.as_tuple(value):
                if isinstance(t, torch.Tensor) and t.device.type == "cuda":
                    t.record_stream(stage.stream)
        return value

    def abort(self) -> None:
        """Wake every worker that waits, with the news that the step stops."""
        for box in self.inbox:
            box.put(_ABORT)
            box.ring()

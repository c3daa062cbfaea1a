"""Execute per-stage action lists.

The default executor runs one thread per stage, each walking its actions in
schedule order. Stages talk through inboxes: a forward output goes to the next
stage's inbox, an input gradient to the previous stage's, tagged with kind and
micro-batch so a stage consumes them in whatever order its schedule says.
Compute releases the GIL, so stages on different cores or devices overlap.

The ``inline`` executor walks the same table tick by tick on the calling
thread. It cannot overlap CPU stages, but it pays no thread hand-offs, which
is what matters when actions take microseconds; with CUDA stages it still
overlaps them, because kernels are queued on each stage's own stream.

On CUDA a message carries an event recorded after the tensor was produced (and
copied to the receiver's device); the receiver's stream waits on it, so the
host never blocks on the GPU.

Failure is first-class: the first exception in any stage stops every worker
(blocked ones are woken by an abort message) and reaches the caller as a
:class:`StageError` naming the stage and the action. A KeyboardInterrupt or a
timeout in the caller stops the workers the same way.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .schedule import Action, _place
from .stage import Stage

_ABORT = object()
EXECUTORS = ("threads", "inline")


class StageError(RuntimeError):
    """An exception raised inside a stage, with the stage and action named."""

    def __init__(self, stage: int, action: Action, cause: BaseException) -> None:
        kind = "forward" if action.kind == "F" else "backward"
        super().__init__(
            f"stage {stage} failed in the {kind} of micro-batch {action.microbatch}: "
            f"{type(cause).__name__}: {cause}"
        )
        self.stage, self.action = stage, action


class _Aborted(Exception):
    pass


def default_threads(K: int) -> int:
    """Intra-op threads per CPU stage: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // K)


class Runtime:
    """Runs one step's per-stage orders over ``stages``."""

    def __init__(self, stages: Sequence[Stage], threads_per_stage: int | None = None,
                 timeout: float | None = None, executor: str = "threads") -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"unknown executor {executor!r}: use one of {EXECUTORS}")
        self.stages = list(stages)
        self.threads = threads_per_stage or default_threads(len(self.stages))
        self.timeout = timeout
        self.executor = executor
        self.current: list[Action | None] = [None] * len(self.stages)
        self._placed: tuple[object, list[list[Action]]] = (None, [])

    def run(self, orders: Sequence[Sequence[Action]], inputs: Sequence[Tensor], grad: bool) -> None:
        """Run the orders; ``inputs`` are the micro-batches, already on the first stage's device."""
        K = len(self.stages)
        self._inbox = [queue.SimpleQueue() for _ in range(K)]
        self._stash: list[dict[tuple[str, int], Any]] = [{} for _ in range(K)]
        self._abort = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.current = [None] * K
        if self.executor == "inline":
            self._run_inline(orders, inputs, grad)
        else:
            self._run_threads(orders, inputs, grad)
        for stage in self.stages:
            if stage.stream is not None:
                stage.stream.synchronize()

    # -- the two executors -------------------------------------------------------------------

    def _run_threads(self, orders: Sequence[Sequence[Action]], inputs: Sequence[Tensor], grad: bool) -> None:
        workers = [threading.Thread(target=self._worker, args=(j, orders[j], inputs, grad),
                                    name=f"gpipe-stage-{j}", daemon=True) for j in range(len(self.stages))]
        for w in workers:
            w.start()
        try:
            self._wait(workers)
        except BaseException:
            self._stop()
            for w in workers:
                w.join(timeout=30)
            raise
        if self._error is not None:
            raise self._error

    def _worker(self, j: int, order: Sequence[Action], inputs: Sequence[Tensor], grad: bool) -> None:
        torch.set_num_threads(self.threads)
        with torch.set_grad_enabled(grad), _on_stream(self.stages[j]):
            for action in order:
                if self._abort.is_set():
                    return
                try:
                    self._execute(j, action, inputs, grad)
                except _Aborted:
                    return
                except BaseException as exc:  # noqa: BLE001 - every failure must reach the caller
                    self._fail(j, action, exc)
                    return

    def _run_inline(self, orders: Sequence[Sequence[Action]], inputs: Sequence[Tensor], grad: bool) -> None:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        if orders is not self._placed[0]:  # a pipe passes the same orders every step: place them once
            self._placed = (orders, _place(orders))
        with torch.set_grad_enabled(grad):
            for tick in self._placed[1]:
                for action in tick:
                    j = action.stage
                    try:
                        if self.stages[j].stream is None:
                            self._execute(j, action, inputs, grad)
                        else:
                            with _on_stream(self.stages[j]):
                                self._execute(j, action, inputs, grad)
                    except Exception as exc:
                        raise StageError(j, action, exc) from exc
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"the step took longer than timeout={self.timeout}s; "
                                       "look for a stage that never returns, or raise the timeout")

    # -- one action, shared by both executors ------------------------------------------------

    def _execute(self, j: int, action: Action, inputs: Sequence[Tensor], grad: bool) -> None:
        stage, i = self.stages[j], action.microbatch
        last = j == len(self.stages) - 1
        self.current[j] = action
        if action.kind == "F":
            x = inputs[i] if j == 0 else self._recv(stage, "F", i)
            out = stage.forward(i, x)
            if not last:
                self._send(stage, self.stages[j + 1], "F", i, out)
            elif not grad:
                stage.outputs[i] = out
        else:
            gx = stage.backward(i, None if last else self._recv(stage, "B", i))
            if j > 0:
                self._send(stage, self.stages[j - 1], "B", i, gx)
        self.current[j] = None

    def _send(self, src: Stage, dst: Stage, kind: str, i: int, t: Tensor | None) -> None:
        event = None
        if t is not None and t.device != dst.device:
            t = t.to(dst.device, non_blocking=src.stream is not None and dst.stream is not None)
        if src.stream is not None:
            event = torch.cuda.Event()
            event.record(src.stream)
        if self.executor == "inline":
            self._stash[dst.index][kind, i] = (t, event)
        else:
            self._inbox[dst.index].put((kind, i, t, event))

    def _recv(self, stage: Stage, kind: str, i: int) -> Tensor | None:
        stash = self._stash[stage.index]
        while (kind, i) not in stash:  # only the threaded executor ever waits here
            message = self._inbox[stage.index].get()
            if message is _ABORT:
                raise _Aborted
            stash[message[0], message[1]] = message[2:]
        t, event = stash.pop((kind, i))
        if event is not None and stage.stream is not None:
            stage.stream.wait_event(event)
            if t is not None and t.device.type == "cuda":
                t.record_stream(stage.stream)
        return t

    # -- stopping ----------------------------------------------------------------------------

    def _wait(self, workers: list[threading.Thread]) -> None:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        for w in workers:
            while w.is_alive():
                w.join(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
                if deadline is not None and time.monotonic() >= deadline and w.is_alive():
                    busy = ", ".join(f"stage {j} in {a}" for j, a in enumerate(self.current) if a is not None)
                    raise TimeoutError(
                        f"the step took longer than timeout={self.timeout}s (last actions: {busy}); "
                        "look for a stage that never returns, or raise the timeout"
                    )

    def _stop(self) -> None:
        """Ask every worker to stop and wake the ones blocked on an inbox."""
        self._abort.set()
        for box in self._inbox:
            box.put(_ABORT)

    def _fail(self, j: int, action: Action, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                error = StageError(j, action, exc)
                error.__cause__ = exc
                self._error = error
        self._stop()


class _on_stream:
    """Make the stage's device and stream current on this thread (no-op on CPU)."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self._ctx: list[Any] = []

    def __enter__(self) -> None:
        if self.stage.stream is not None:
            self._ctx = [torch.cuda.device(self.stage.device), torch.cuda.stream(self.stage.stream)]
            for c in self._ctx:
                c.__enter__()

    def __exit__(self, *exc: object) -> None:
        for c in reversed(self._ctx):
            c.__exit__(*exc)

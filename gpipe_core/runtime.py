"""Execute a table on workers and return what the step produced.

Workers, not stages, are the unit of execution. A worker owns some devices
(pipeline ranks) and walks their actions in the table's tick order, the order
the validator proved free of deadlock. With the ``threads`` executor there
is one worker thread per CUDA device, and for CPU ranks as many as there are
cores (K = 4 stages on 2 cores run on two threads, not four: each thread
hand-off costs tens of microseconds and four threads cannot run at once on
two cores anyway). The ``inline`` executor is a single worker on the calling
thread. Either way, a worker executes one action at a time through the same
body, :meth:`Runtime._execute`, and a message to a stage of the same worker
never touches a queue.

Stages talk through messages (:mod:`gpipe_core.mailbox`). The walker times
each action, and the shortest time each stage and kind has taken tells the
mailbox when waking another worker would cost more than the action it
enables (stages of microseconds): then a wake-up waits a little and serves
several messages.

Failure is first-class: the first exception in any worker stops every worker
(blocked ones are woken by an abort message) and reaches the caller as a
:class:`~gpipe_core.common.StageError` naming the stage and the action. A
KeyboardInterrupt or a timeout in the caller stops the workers the same way.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .common import Loss, StageError, default_threads
from .mailbox import Aborted, Post
from .memory import MemoryMeter
from .schedule import Action, Schedule, flatten
from .stage import Stage

EXECUTORS = ("threads", "inline", "ranks")  # ranks: a thread per rank whatever the cores (stages that wait)


@dataclass
class StepResult:
    """What one step produced: the last stage's outputs (its losses when training), stamps and memory."""

    outputs: dict[int, Any]
    stamps: list[tuple[int, torch.device, list[tuple[int, str, Any, Any]]]]
    memory: list[int] | None  # peak activation bytes per device, when measured


def worker_of_ranks(devices: Sequence[torch.device], placement: Sequence[int], executor: str) -> list[int]:
    """The worker each rank (device slot) runs on: per CUDA device, CPU ranks spread over the cores."""
    if executor == "inline":
        return [0] * (max(placement) + 1)
    rank_device = {placement[s]: devices[s] for s in range(len(placement))}
    cuda = sorted({str(d) for d in rank_device.values() if d.type == "cuda"})
    cpu_ranks = sorted(r for r, d in rank_device.items() if d.type != "cuda")
    cpu_workers = len(cpu_ranks) if executor == "ranks" else min(len(cpu_ranks), os.cpu_count() or 1)
    workers = {}
    for r, d in rank_device.items():
        # CPU ranks in contiguous blocks: a micro-batch's hop to the next rank then mostly stays on its worker
        workers[r] = cuda.index(str(d)) if d.type == "cuda" else \
            len(cuda) + cpu_ranks.index(r) * cpu_workers // len(cpu_ranks)
    return [workers[r] for r in range(len(rank_device))]


class Runtime:
    """Runs steps of one table over ``stages`` placed on devices by ``placement``."""

    def __init__(self, stages: Sequence[Stage], table: Schedule, placement: Sequence[int],
                 threads_per_stage: int | None = None, timeout: float | None = None,
                 executor: str = "threads") -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"unknown executor {executor!r}: use one of {EXECUTORS}")
        self.stages, self.placement = list(stages), list(placement)
        self.timeout, self.executor, self.link = timeout, executor, None  # link: mailbox.Link (comm.inject)
        self.worker_of_stage = [worker_of_ranks([s.device for s in stages], placement, executor)[r]
                                for r in placement]
        self.workers = max(self.worker_of_stage) + 1
        cpu_workers = len({w for w, s in zip(self.worker_of_stage, stages) if s.device.type != "cuda"})
        self.threads = threads_per_stage or default_threads(cpu_workers)
        self._training = self._split(table)
        self._inference: dict[int, list[list[Action]]] = {}
        self.current: list[Action | None] = [None] * self.workers
        # the shortest wall time of each (stage, kind) in the last step: what the mailbox expects of the next
        self.shortest: dict[tuple[int, str], float] = {}

    def _split(self, table: Schedule) -> list[list[Action]]:
        """Each worker's actions in tick order; an overlapped F&B issues its forward, then its backward
        (on CUDA each stage has its own stream, so the two can overlap; on a CPU worker they take turns)."""
        orders: list[list[Action]] = [[] for _ in range(self.workers)]
        for action in flatten(table):
            orders[self.worker_of_stage[action.stage]].append(action)
        return orders

    def _forward_only(self, M: int) -> list[list[Action]]:
        if M not in self._inference:
            S = len(self.stages)
            self._inference[M] = self._split([[Action("F", i, s) for i in range(M)] for s in range(S)]
                                             if self.workers == 1 else _diagonal(M, S))
        return self._inference[M]

    def run(self, inputs: Sequence[Any], loss: Loss | None, seed: int, measure_memory: bool) -> StepResult:
        """One step: training through the table when ``loss`` is given, else forward-only inference."""
        grad = loss is not None
        meters = self._meters() if measure_memory else {}
        for stage in self.stages:
            if stage.stream is not None:  # inputs, targets and updated weights come from the default stream
                stage.stream.wait_stream(torch.cuda.current_stream(stage.device))
            last = stage.index == len(self.stages) - 1
            stage.begin_step(len(inputs), seed, loss if last else None, meters.get(self.placement[stage.index]))
        orders = self._training if grad else self._forward_only(len(inputs))
        self._post = Post(self.worker_of_stage, self.workers, self.link)
        self._seen: dict[tuple[int, str], float] = {}
        self._abort = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._outputs: dict[int, Any] = {}
        self.current = [None] * self.workers
        with torch.set_grad_enabled(grad):
            if self.workers == 1:
                self._run_here(orders[0], inputs)
            else:
                self._run_threads(orders, inputs, grad)
                self.shortest = self._seen  # a step that raised leaves the estimate as it was
        for stage in self.stages:
            if stage.stream is not None:
                stage.stream.synchronize()
        memory = [meters[d].peak for d in sorted(meters)] if meters else None
        return StepResult(self._outputs, [(s.index, s.device, list(s.events)) for s in self.stages], memory)

    def _meters(self) -> dict[int, MemoryMeter]:
        params: dict[int, list[Any]] = {}
        for stage in self.stages:
            params.setdefault(self.placement[stage.index], []).extend(stage.module.parameters())
        return {d: MemoryMeter(p) for d, p in params.items()}

    # -- the two ways to run workers --------------------------------------------------------------

    def _run_here(self, order: Sequence[Action], inputs: Sequence[Any]) -> None:
        """One worker on the calling thread: no hand-offs; the timeout is checked between actions."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        caller_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            self._walk_here(order, inputs, deadline)
        finally:
            torch.set_num_threads(caller_threads)

    def _walk_here(self, order: Sequence[Action], inputs: Sequence[Any], deadline: float | None) -> None:
        for action in order:
            stage = self.stages[action.stage]
            try:
                if stage.stream is None:
                    self._execute(0, action, inputs)
                else:
                    with _on_stream(stage):
                        self._execute(0, action, inputs)
            except Exception as exc:
                raise StageError(action.stage, action, exc) from exc
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the step took longer than timeout={self.timeout}s (last action: {action}); "
                                   "look for a stage that never returns, or raise the timeout")

    def _run_threads(self, orders: Sequence[Sequence[Action]], inputs: Sequence[Any], grad: bool) -> None:
        workers = [threading.Thread(target=self._worker, args=(w, orders[w], inputs, grad),
                                    name=f"gpipe-worker-{w}", daemon=True) for w in range(self.workers)]
        self._running, self._all_done = len(workers), threading.Event()
        launched: list[threading.Thread] = []
        try:  # an interrupt may land while threads are still starting: the launched ones must stop too
            for t in workers:
                launched.append(t)
                t.start()
            self._wait(workers)
        except BaseException:
            self._stop()
            for t in launched:
                # start() may have been interrupted after the thread began but before it reported in
                if t._started.wait(1.0):  # noqa: SLF001 - the only way to tell "began" from "never began"
                    t.join(timeout=30)
            raise
        if self._error is not None:
            raise self._error

    def _worker(self, w: int, order: Sequence[Action], inputs: Sequence[Any], grad: bool) -> None:
        try:
            self._walk(w, order, inputs, grad)
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self._all_done.set()

    def _walk(self, w: int, order: Sequence[Action], inputs: Sequence[Any], grad: bool) -> None:
        torch.set_num_threads(self.threads)
        outbox, clock, never, seen = self._post.outbox[w], time.perf_counter, float("inf"), self._seen
        keys = [(a.stage, a.kind) for a in order]
        # what the mailbox expects each next action to cost, from the last step; after the last action: never
        upcoming = [self.shortest.get(k, never) for k in keys[1:]] + [never]
        with torch.set_grad_enabled(grad):
            for action, key, next_cost in zip(order, keys, upcoming):
                if self._abort.is_set():
                    return
                stage, outbox.next_cost = self.stages[action.stage], next_cost
                start = clock()
                try:
                    if stage.stream is None:
                        self._execute(w, action, inputs)
                    else:
                        with _on_stream(stage):
                            self._execute(w, action, inputs)
                except Aborted:
                    return
                except BaseException as exc:  # noqa: BLE001 - every failure must reach the caller
                    self._fail(action, exc)
                    return
                end = clock()
                if end - start < seen.get(key, never):
                    seen[key] = end - start
                outbox.tick(end)

    # -- one action, shared by every worker ---------------------------------------------------------

    def _execute(self, w: int, action: Action, inputs: Sequence[Any]) -> None:
        s, i, kind = action.stage, action.microbatch, action.kind
        stage, last = self.stages[s], s == len(self.stages) - 1
        self.current[w] = action
        if kind == "F":
            out = stage.forward(i, inputs[i] if s == 0 else self._post.recv(w, stage, "F", i))
            if last:
                self._outputs[i] = out
            else:
                self._post.send(stage, self.stages[s + 1], "F", i, out)
        elif kind == "W":
            stage.backward_weight(i)
        else:
            grad = None if last else self._post.recv(w, stage, "G", i)
            grad_in = stage.backward(i, grad) if kind == "B" else stage.backward_input(i, grad)
            if s > 0:
                self._post.send(stage, self.stages[s - 1], "G", i, grad_in)
        self.current[w] = None

    # -- stopping ---------------------------------------------------------------------------------

    def _wait(self, workers: list[threading.Thread]) -> None:
        """Wait for every worker to finish, on an event rather than ``Thread.join``.

        A KeyboardInterrupt that lands inside ``Thread.join(timeout)`` can leave
        CPython (3.11) believing a still-running thread has stopped, and later
        joins then return at once; an interrupted ``Event.wait`` has no such effect.
        """
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while not self._all_done.is_set():
            self._all_done.wait(0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic())))
            if deadline is not None and time.monotonic() >= deadline and not self._all_done.is_set():
                busy = ", ".join(f"stage {a.stage} in {a}" for a in self.current if a is not None)
                raise TimeoutError(f"the step took longer than timeout={self.timeout}s (last actions: {busy}); "
                                   "look for a stage that never returns, or raise the timeout")
        for t in workers:  # each has left its loop; let it leave the thread too
            t.join()

    def _stop(self) -> None:
        """Ask every worker to stop and wake the ones blocked on an inbox."""
        self._abort.set()
        self._post.abort()

    def _fail(self, action: Action, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                error = StageError(action.stage, action, exc)
                error.__cause__ = exc
                self._error = error
        self._stop()


def _diagonal(M: int, S: int) -> list[list[Action]]:
    """The forward-only fill: F(i) on stage s at tick i + s."""
    return [[Action("F", t - s, s) for s in range(S) if 0 <= t - s < M] for t in range(M + S - 1)]


class _on_stream:
    """Make the stage's device and stream current on this thread (no-op on CPU)."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self._ctx: list[Any] = []

    def __enter__(self) -> None:
        self._ctx = [torch.cuda.device(self.stage.device), torch.cuda.stream(self.stage.stream)]
        for c in self._ctx:
            c.__enter__()

    def __exit__(self, *exc: object) -> None:
        for c in reversed(self._ctx):
            c.__exit__(*exc)

"""Execute a table on workers and return what the step produced.

Workers, not stages, are the unit of execution: a worker owns some devices
(pipeline ranks) and walks their actions in the table's tick order
(:mod:`gpipe_core.engine.workers` says which worker runs what). The ``threads``
executor runs a thread per worker; ``inline`` is a single worker on the
calling thread. Either way a worker executes one action at a time through
the same body, :meth:`gpipe_core.engine.step.Step.execute`, and a message to a stage
of the same worker never touches a queue. Everything one step changes lives
in its :class:`~gpipe_core.engine.step.Step`; the runtime keeps only what outlives a
step: the orders and the shortest time each action took last step.

Stages talk through messages (:mod:`gpipe_core.engine.mailbox`). The walker times
each action, and the shortest time each stage and kind has taken tells the
mailbox when waking another worker would cost more than the action it
enables (stages of microseconds): then a wake-up waits a little and serves
several messages.

Failure is first-class: the first exception in any worker stops every worker
(blocked ones are woken by an abort message) and reaches the caller as a
:class:`~gpipe_core.engine.common.StageError` naming the stage and the action. A
KeyboardInterrupt or a timeout in the caller stops the workers the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..schedules.schedule import Action, Schedule, flatten
from .common import Loss, StageError, default_threads
from .memory import MemoryMeter
from .stage import Stage
from .step import Step
from .trace import StageStamps
from .workers import EXECUTORS, forward_only, worker_of_ranks, worker_orders


@dataclass
class StepResult:
    """What one step produced: the last stage's outputs (its losses when training), stamps and memory."""

    outputs: dict[int, Any]
    stamps: list[StageStamps]
    memory: list[int] | None  # peak activation bytes per device, when measured


class Runtime:
    """Runs steps of one table over ``stages`` placed on devices by ``placement``."""

    def __init__(self, stages: Sequence[Stage], table: Schedule, placement: Sequence[int],
                 threads_per_stage: int | None = None, timeout: float | None = None,
                 executor: str = "threads") -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"unknown executor {executor!r}: use one of {EXECUTORS}")
        self.stages, self.placement = list(stages), list(placement)
        # link: a mailbox.Link delaying messages between stages (gpipe_core.sim.comm.inject), a benchmark's hook
        self.timeout, self.executor, self.link = timeout, executor, None
        self.worker_of_stage = [worker_of_ranks([s.device for s in stages], placement, executor)[r]
                                for r in placement]
        self.workers = max(self.worker_of_stage) + 1
        cpu_workers = len({w for w, s in zip(self.worker_of_stage, stages) if s.device.type != "cuda"})
        self.threads = threads_per_stage or default_threads(cpu_workers)
        self.M = 1 + max((a.microbatch for a in flatten(table)), default=-1)  # the table's M, read once
        self._training = worker_orders(table, self.worker_of_stage, self.workers)
        self._inference: dict[int, list[list[Action]]] = {}
        # the shortest wall time of each (stage, kind) in the last step: what the mailbox expects of the next
        self.shortest: dict[tuple[int, str], float] = {}
        self.step: Step | None = None  # the step in progress, for observers and tests; None between steps

    def run(self, inputs: Sequence[Any], loss: Loss | None, seed: int, measure_memory: bool) -> StepResult:
        """One step: training through the table when ``loss`` is given, else forward-only inference."""
        grad = loss is not None
        if grad and len(inputs) != self.M:
            raise ValueError(f"the table runs M={self.M} micro-batches but {len(inputs)} inputs came: split the "
                             f"batch into {self.M} (GPipe(chunks={self.M}) does), or build the table for "
                             f"M={len(inputs)}")
        meters = self._meters() if measure_memory else {}
        for stage in self.stages:
            if stage.stream is not None:  # inputs, targets and updated weights come from the default stream
                stage.stream.wait_stream(torch.cuda.current_stream(stage.device))
            last = stage.index == len(self.stages) - 1
            stage.begin_step(len(inputs), seed, loss if last else None, meters.get(self.placement[stage.index]))
        orders = self._training if grad else self._forward_only(len(inputs))
        step = self.step = Step(self.stages, inputs, self.worker_of_stage, self.workers, self.link, self.shortest)
        try:
            with torch.set_grad_enabled(grad):
                if self.workers == 1:
                    self._run_here(step, orders[0])
                else:
                    self._run_threads(step, orders, grad)
                    self.shortest = step.seen  # a step that raised leaves the estimate as it was
        finally:
            self.step = None  # nothing of a step outlives it
        for stage in self.stages:
            if stage.stream is not None:
                stage.stream.synchronize()
        memory = [meters[d].peak for d in sorted(meters)] if meters else None
        return StepResult(step.outputs, [StageStamps(s.index, s.device, list(s.events)) for s in self.stages],
                          memory)

    def _forward_only(self, M: int) -> list[list[Action]]:
        if M not in self._inference:
            self._inference[M] = forward_only(M, len(self.stages), self.worker_of_stage, self.workers)
        return self._inference[M]

    def _meters(self) -> dict[int, MemoryMeter]:
        params: dict[int, list[Any]] = {}
        for stage in self.stages:
            params.setdefault(self.placement[stage.index], []).extend(stage.module.parameters())
        return {d: MemoryMeter(p) for d, p in params.items()}

    # -- the two ways to run workers --------------------------------------------------------------

    def _run_here(self, step: Step, order: Sequence[Action]) -> None:
        """One worker on the calling thread: no hand-offs; the timeout is checked between actions."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        caller_threads = torch.get_num_threads()
        if caller_threads != self.threads:
            torch.set_num_threads(self.threads)
        try:
            for action in order:
                try:
                    step.run(0, action)
                except Exception as exc:
                    raise StageError(action.stage, action, exc) from exc
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"the step took longer than timeout={self.timeout}s (last action: "
                                       f"{action}); look for a stage that never returns, or raise the timeout")
        finally:
            if caller_threads != self.threads:
                torch.set_num_threads(caller_threads)

    def _run_threads(self, step: Step, orders: Sequence[Sequence[Action]], grad: bool) -> None:
        running, all_done = [len(orders)], threading.Event()

        def worker(w: int) -> None:
            try:
                step.walk(w, orders[w], self.threads, grad)
            finally:
                with step.lock:
                    running[0] -= 1
                    if running[0] == 0:
                        all_done.set()

        workers = [threading.Thread(target=worker, args=(w,), name=f"gpipe-worker-{w}", daemon=True)
                   for w in range(len(orders))]
        launched: list[threading.Thread] = []
        try:  # an interrupt may land while threads are still starting: the launched ones must stop too
            for t in workers:
                launched.append(t)
                t.start()
            self._wait(step, workers, all_done)
        except BaseException:
            step.stop()
            for t in launched:
                # start() may have been interrupted after the thread began but before it reported in
                if t._started.wait(1.0):  # noqa: SLF001 - the only way to tell "began" from "never began"
                    t.join(timeout=30)
            raise
        if step.error is not None:
            raise step.error

    def _wait(self, step: Step, workers: list[threading.Thread], all_done: threading.Event) -> None:
        """Wait for every worker to finish, on an event rather than ``Thread.join``.

        A KeyboardInterrupt that lands inside ``Thread.join(timeout)`` can leave
        CPython (3.11) believing a still-running thread has stopped, and later
        joins then return at once; an interrupted ``Event.wait`` has no such effect.
        """
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while not all_done.is_set():
            all_done.wait(0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic())))
            if deadline is not None and time.monotonic() >= deadline and not all_done.is_set():
                raise TimeoutError(f"the step took longer than timeout={self.timeout}s (last actions: "
                                   f"{step.busy()}); look for a stage that never returns, or raise the timeout")
        for t in workers:  # each has left its loop; let it leave the thread too
            t.join()

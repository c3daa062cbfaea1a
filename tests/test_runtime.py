"""The runtime on its own: a hand-made table over fake stages that record what they are asked to do.

No autograd here: each fake stage (``helpers.fakes``) returns a string naming
what it computed, so the tests see exactly which message reached which stage,
in which order each worker ran its actions, and how a failure or a timeout
stops every worker.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch
from helpers.fakes import FakeStage, Hold, StoppedClock

from gpipe_core.engine import runtime as runtime_module
from gpipe_core.engine.common import StageError
from gpipe_core.engine.runtime import Runtime, worker_of_ranks
from gpipe_core.schedules.schedule import Action, gpipe_schedule, loop_placement, ticks_from_orders


def run(table: list[list[Action]], S: int, placement: list[int] | None = None, executor: str = "threads",
        **kwargs: Any) -> tuple[list[FakeStage], Runtime, Any]:
    stages = [FakeStage(s, **kwargs) for s in range(S)]
    runtime = Runtime(stages, table, placement or list(range(S)), executor=executor, timeout=5)
    result = runtime.run([f"x{i}" for i in range(2)], loss=object(), seed=0, measure_memory=False)
    return stages, runtime, result


@pytest.mark.parametrize("executor", ["threads", "inline"])
def test_messages_reach_the_right_stage_in_table_order(executor: str) -> None:
    table = gpipe_schedule(2, 3)
    stages, _, result = run(table, 3, executor=executor)
    assert stages[0].calls[:2] == [("F", 0, "x0"), ("F", 1, "x1")]
    assert stages[1].calls[:2] == [("F", 0, "F0@0"), ("F", 1, "F1@0")]
    assert stages[2].calls[2:] == [("B", 1, None), ("B", 0, None)]  # the last stage's backward starts the chain
    assert stages[1].calls[2:] == [("B", 1, "B1@2"), ("B", 0, "B0@2")]
    assert result.outputs == {0: "F0@2", 1: "F1@2"}


def test_split_backward_sends_the_input_gradient_and_runs_w_locally() -> None:
    orders = [[Action("F", 0, 0), Action("I", 0, 0), Action("W", 0, 0)],
              [Action("F", 0, 1), Action("I", 0, 1), Action("W", 0, 1)]]
    table = ticks_from_orders(orders)
    stages = [FakeStage(s) for s in range(2)]
    Runtime(stages, table, [0, 1]).run(["x0"], loss=object(), seed=0, measure_memory=False)
    assert stages[0].calls == [("F", 0, "x0"), ("I", 0, "I0@1"), ("W", 0, None)]


def test_workers_follow_cores_and_devices() -> None:
    cpu = torch.device("cpu")
    assert worker_of_ranks([cpu] * 4, [0, 1, 2, 3], "inline") == [0, 0, 0, 0]
    workers = worker_of_ranks([cpu] * 4, [0, 1, 2, 3], "threads")
    cores = min(4, __import__("os").cpu_count() or 1)
    assert len(set(workers)) == cores and workers == sorted(workers)  # contiguous blocks of ranks per worker
    stages, runtime, _ = run(gpipe_schedule(2, 4), 4)
    names = set().union(*(s.thread for s in stages))
    assert len(names) == runtime.workers == cores  # never more threads than cores for CPU stages


def test_virtual_stages_on_one_device_share_a_worker() -> None:
    placement = loop_placement(2, 2)
    orders: list[list[Action]] = [[], []]
    for s in range(4):
        orders[placement[s]] += [Action("F", i, s) for i in range(2)]
    for s in reversed(range(4)):
        orders[placement[s]] += [Action("B", i, s) for i in range(2)]
    stages, runtime, result = run(ticks_from_orders(orders, placement), 4, placement)
    assert runtime.worker_of_stage[0] == runtime.worker_of_stage[2]
    assert stages[2].calls[0] == ("F", 0, "F0@1") and result.outputs[1] == "F1@3"


@pytest.mark.parametrize("executor", ["threads", "inline"])
def test_a_failing_stage_stops_everyone_and_is_named(executor: str) -> None:
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(StageError, match=r"stage 1 failed in the backward of micro-batch 1: RuntimeError: fake"):
        run(gpipe_schedule(2, 3), 3, executor=executor, fail=Action("B", 1, 1))
    assert {t.name for t in threading.enumerate()} <= before


def test_a_timeout_names_the_stuck_action(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage 0's first forward never returns; the deadline passes once it has begun (helpers.fakes: no real time)."""
    clock, hold = StoppedClock(), Hold()
    monkeypatch.setattr(runtime_module, "time", clock)
    stages = [FakeStage(0, hold=hold), FakeStage(1)]
    runtime = Runtime(stages, gpipe_schedule(2, 2), [0, 1], timeout=0.2)
    hold.once_entered(runtime, clock.expire)
    with pytest.raises(TimeoutError, match=r"timeout=0.2s \(last actions?: stage 0 in F0@stage0"):
        runtime.run(["x0", "x1"], loss=object(), seed=0, measure_memory=False)
    assert stages[0].calls == [("F", 0, "x0")] and stages[1].calls == []  # released after the stop: no further


def test_inference_runs_forwards_only() -> None:
    stages = [FakeStage(s) for s in range(2)]
    result = Runtime(stages, gpipe_schedule(2, 2), [0, 1]).run(["x0", "x1"], loss=None, seed=0,
                                                               measure_memory=False)
    assert [c[0] for s in stages for c in s.calls] == ["F"] * 4 and result.outputs == {0: "F0@1", 1: "F1@1"}


def test_unknown_executor_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown executor 'processes'"):
        Runtime([FakeStage(0)], gpipe_schedule(1, 1), [0], executor="processes")


def test_an_interrupt_while_workers_start_stops_the_started_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C can land between two ``Thread.start`` calls: the worker already running must stop as well."""
    start = threading.Thread.start
    started: list[threading.Thread] = []

    def start_then_interrupt(self: threading.Thread) -> None:
        if started:
            raise KeyboardInterrupt
        start(self)
        started.append(self)

    monkeypatch.setattr(threading.Thread, "start", start_then_interrupt)
    stages = [FakeStage(s, sleep=0.05) for s in range(3)]
    runtime = Runtime(stages, gpipe_schedule(2, 3), [0, 1, 2])
    if runtime.workers < 2:
        pytest.skip("one core: a single worker runs on the calling thread")
    with pytest.raises(KeyboardInterrupt):
        runtime.run(["x0", "x1"], loss=object(), seed=0, measure_memory=False)
    assert started and not started[0].is_alive()


def test_the_calling_thread_runs_with_the_threads_asked_for() -> None:
    """threads_per_stage holds on the single-worker path too, and the caller's setting comes back."""
    seen: list[int] = []

    class Probe(FakeStage):
        def forward(self, i: int, x: Any) -> Any:
            seen.append(torch.get_num_threads())
            return super().forward(i, x)

    before = torch.get_num_threads()
    Runtime([Probe(0)], gpipe_schedule(2, 1), [0], threads_per_stage=1).run(
        ["x0", "x1"], loss=object(), seed=0, measure_memory=False)
    assert seen == [1, 1] and torch.get_num_threads() == before

"""The mailbox: delivery at once, wake-ups held only for short actions and never lost.

The holding rules are tested on an inbox that records its rings, with the
times given by hand, so nothing here depends on how fast the machine is. The
runtime tests at the end force every wake-up to be held (all actions "short",
an endless budget): a wake-up that no flush delivers would leave a worker
asleep and the step would end in the runtime's timeout instead of its result.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from helpers.fakes import FakeStage

from gpipe_core.engine import mailbox
from gpipe_core.engine.mailbox import Aborted, Inbox, Outbox, Post
from gpipe_core.engine.runtime import Runtime
from gpipe_core.schedules.schedule import gpipe_schedule, one_f_one_b_schedule


class RecordingInbox(Inbox):
    def __init__(self) -> None:
        super().__init__()
        self.rings = 0

    def ring(self) -> None:
        self.rings += 1
        super().ring()


def outbox(n: int = 2, short: float = 1.0, budget: float = 10.0) -> tuple[Outbox, list[RecordingInbox]]:
    boxes = [RecordingInbox() for _ in range(n)]
    return Outbox(boxes, short=short, budget=budget), boxes


def test_a_message_is_delivered_at_once_even_when_its_wake_up_is_held() -> None:
    out, boxes = outbox()
    out.next_cost = 0.5  # shorter than short=1.0
    out.send(1, "m1", may_hold=True)
    assert list(boxes[1].items) == ["m1"] and boxes[1].rings == 0 and out.held == {1}


@pytest.mark.parametrize("next_cost, may_hold", [(1.0, True), (float("inf"), True), (0.5, False)])
def test_long_or_unknown_next_actions_and_cuda_ring_at_once(next_cost: float, may_hold: bool) -> None:
    out, boxes = outbox()
    out.next_cost = next_cost
    out.send(1, "m", may_hold=may_hold)
    assert boxes[1].rings == 1 and not out.held


def test_held_wake_ups_ring_at_the_budget_or_before_a_long_action() -> None:
    out, boxes = outbox(short=1.0, budget=10.0)
    out.next_cost = 0.5
    out.send(1, "m", may_hold=True)
    start = out.since
    out.tick(start + 9.0)  # 9 + 0.5 < 10: still held
    assert boxes[1].rings == 0
    out.tick(start + 9.5)  # 9.5 + 0.5 reaches the budget
    assert boxes[1].rings == 1 and not out.held
    out.send(1, "m2", may_hold=True)
    out.next_cost = 2.0  # the next action is not short: ring before it
    out.tick(out.since)
    assert boxes[1].rings == 2


def test_flush_rings_every_held_inbox_once() -> None:
    out, boxes = outbox(n=3)
    out.next_cost = 0.0
    for w in (1, 2, 1):
        out.send(w, "m", may_hold=True)
    out.flush()
    assert [b.rings for b in boxes] == [0, 1, 1] and not out.held


def test_a_sleeping_owner_wakes_on_ring_and_reads_in_order() -> None:
    box, got = Inbox(), []
    reader = threading.Thread(target=lambda: got.extend([box.get(), box.get()]))
    reader.start()
    box.put("a")
    box.put("b")
    box.ring()  # whether the reader slept already or not, it reads both
    reader.join(timeout=30)
    assert not reader.is_alive() and got == ["a", "b"]


def test_a_ring_with_nobody_asleep_is_harmless() -> None:
    box = Inbox()
    box.ring()
    box.ring()  # never a second release of the bell
    box.put("x")
    assert box.get() == "x"


def test_abort_wakes_a_worker_waiting_for_a_message() -> None:
    post = Post([0, 1], workers=2)
    stage = FakeStage(1)
    caught: list[BaseException] = []

    def wait() -> None:
        try:
            post.recv(1, stage, "F", 0)
        except Aborted as exc:
            caught.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    post.abort()
    waiter.join(timeout=30)
    assert not waiter.is_alive() and len(caught) == 1


def test_a_message_to_a_stage_of_the_same_worker_stays_in_its_stash() -> None:
    post = Post([0, 0], workers=1)
    src, dst = FakeStage(0), FakeStage(1)
    post.send(src, dst, "F", 3, "value")
    assert not post.inbox[0].items and post.recv(0, dst, "F", 3) == "value"


@pytest.fixture
def every_wake_held(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every action counts as short and the budget never runs out: only the flushes deliver wake-ups."""
    monkeypatch.setattr(mailbox, "SHORT_ACTION", float("inf"))
    monkeypatch.setattr(mailbox, "HOLD_BUDGET", float("inf"))


@pytest.mark.parametrize("schedule", [gpipe_schedule, one_f_one_b_schedule])
@pytest.mark.parametrize("S", [2, 3, 4])
def test_held_wake_ups_never_strand_a_worker(every_wake_held: None, schedule: Any, S: int) -> None:
    stages = [FakeStage(s) for s in range(S)]
    runtime = Runtime(stages, schedule(4, S), list(range(S)), timeout=20)
    if runtime.workers < 2:
        pytest.skip("one core: a single worker never sends to another")
    for _ in range(3):  # the first step times the actions; later steps hold every wake-up
        result = runtime.run([f"x{i}" for i in range(4)], loss=object(), seed=0, measure_memory=False)
        assert result.outputs == {i: f"F{i}@{S - 1}" for i in range(4)}
        assert stages[0].calls[-1][0] == "B"
    assert runtime.shortest and all(v < float("inf") for v in runtime.shortest.values())


def test_a_failure_while_wake_ups_are_held_still_stops_everyone(every_wake_held: None) -> None:
    from gpipe_core.engine.common import StageError
    from gpipe_core.schedules.schedule import Action

    stages = [FakeStage(s) for s in range(3)]
    runtime = Runtime(stages, gpipe_schedule(4, 3), [0, 1, 2], timeout=20)
    runtime.run([f"x{i}" for i in range(4)], loss=object(), seed=0, measure_memory=False)
    stages[2].fail = Action("B", 2, 2)
    with pytest.raises(StageError, match="stage 2 failed in the backward of micro-batch 2"):
        runtime.run([f"x{i}" for i in range(4)], loss=object(), seed=0, measure_memory=False)


def test_the_estimate_comes_from_the_last_step_only() -> None:
    """A step of tiny actions must not make later, longer steps hold their wake-ups."""
    stages = [FakeStage(s) for s in range(2)]
    runtime = Runtime(stages, gpipe_schedule(8, 2), [0, 1], timeout=60)
    if runtime.workers < 2:
        pytest.skip("one core: the inline walk keeps no estimate")
    inputs = [f"x{i}" for i in range(8)]
    runtime.run(inputs, loss=object(), seed=0, measure_memory=False)
    first = dict(runtime.shortest)
    for stage in stages:
        stage.sleep = 0.05
    runtime.run(inputs, loss=object(), seed=0, measure_memory=False)
    assert set(first) == {(s, k) for s in (0, 1) for k in "FB"} == set(runtime.shortest)
    assert all(runtime.shortest[k] >= 0.05 > first[k] for k in first)  # eight tries each to be under 50 ms

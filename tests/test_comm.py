"""Communication: the simulator's arithmetic on hand-worked cases, and the engine paying what it models.

No wall-clock bound anywhere: the engine checks use only what a sleep
guarantees (it never returns early, so a delayed message is never read
before its arrival) and which thread slept, never how fast anything ran.
``make bench`` (section 9) compares predicted and measured step times.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from gpipe_core import GPipe
from gpipe_core.engine import mailbox
from gpipe_core.schedules.schedule import Action, one_f_one_b_schedule, v_placement
from gpipe_core.schedules.zoo import BUILTINS
from gpipe_core.sim.comm import Comm, hops, inject, send_cost
from gpipe_core.sim.simulate import UNIT, Costs, peak_memory, simulate, times
from gpipe_core.sim.waits import wait_model

HOP = Comm(latency=0.5, bandwidth=4, message=2)  # 0.5 + 2 / 4 = 1 unit per hop


def boxes(trace: object) -> dict[tuple[str, int, int], tuple[float, float]]:
    return {(e.kind, e.microbatch, e.stage): (e.start, e.end) for e in trace.events}  # type: ignore[attr-defined]


def test_a_hop_costs_latency_plus_bytes_over_bandwidth() -> None:
    assert HOP.hop(0) == 1.0 and Comm(latency=2).seconds(10**9) == 2.0
    assert Comm(latency=0.1, bandwidth=10, message=[5, 20]).hop(1) == pytest.approx(2.1)
    with pytest.raises(ValueError, match="bandwidth > 0"):
        Comm(bandwidth=0)


def test_one_f_one_b_by_hand_with_sends_beside_compute() -> None:
    """K=2, M=2, F=1, B=2, hop 1: device 1 gets F0 at 2, device 0 gets B0's gradient at 6 and B1's at 9."""
    trace = simulate(one_f_one_b_schedule(2, 2), 2, Costs(forward=1, backward=2, comm=HOP))
    assert boxes(trace) == {("F", 0, 0): (0, 1), ("F", 1, 0): (1, 2), ("F", 0, 1): (2, 3), ("B", 0, 1): (3, 5),
                            ("F", 1, 1): (5, 6), ("B", 1, 1): (6, 8), ("B", 0, 0): (6, 8), ("B", 1, 0): (9, 11)}
    assert trace.span == 11  # 9 + 2 hops on the critical path


def test_one_f_one_b_by_hand_with_blocking_sends() -> None:
    """The same, but each sender waits for its send: device 0's F1 starts at 2, device 1's F1 at 6."""
    blocking = Comm(latency=0.5, bandwidth=4, message=2, overlap=False)
    trace = simulate(one_f_one_b_schedule(2, 2), 2, Costs(forward=1, backward=2, comm=blocking))
    assert boxes(trace) == {("F", 0, 0): (0, 1), ("F", 1, 0): (2, 3), ("F", 0, 1): (2, 3), ("B", 0, 1): (3, 5),
                            ("F", 1, 1): (6, 7), ("B", 1, 1): (7, 9), ("B", 0, 0): (6, 8), ("B", 1, 0): (10, 12)}
    assert trace.span == 12  # 9 + 3 hops: device 1 also waits out its own send of B0


def test_a_hop_inside_one_device_is_free() -> None:
    """ZBV on K=2 puts stages 1 and 2 (the V's tip) on device 1: only boundaries 0 and 2 cross devices."""
    table, placement = BUILTINS["zbv"].build(4, 2), v_placement(2)
    assert send_cost(Action("F", 0, 1), HOP, placement) == 0 and send_cost(Action("I", 0, 2), HOP, placement) == 0
    assert send_cost(Action("F", 0, 0), HOP, placement) == 1 and send_cost(Action("I", 0, 3), HOP, placement) == 1
    when = times(table, 2, Costs(forward=1, backward=2, comm=HOP), placement=placement)
    crossing = hops(when, HOP, placement)
    assert len(crossing) == 4 * 4  # 2 crossing boundaries x 2 directions x M
    assert {(h.sender.stage, h.receiver.stage) for h in crossing} == {(0, 1), (1, 0), (2, 3), (3, 2)}
    assert all(h.arrive == h.depart + 1 and h.depart == when[h.sender][1] for h in crossing)
    one_device = BUILTINS["zbv"].build(4, 1)  # K=1: both stages on device 0, nothing ever leaves it
    assert simulate(one_device, 1, Costs(comm=Comm(latency=100)), placement=[0, 0]).span == \
        simulate(one_device, 1, Costs(), placement=[0, 0]).span


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_comm_lengthens_steps_not_memory(name: str) -> None:
    """Every built-in: a costlier link never shortens a step, blocking never beats beside-compute, and the
    peak memory (which depends on each device's order only) does not move."""
    b, K, M = BUILTINS[name], 4, 8
    table, placement = b.build(M, K), b.placement(K)
    spans = [simulate(table, K, Costs(1, 2, input_grad=1, weight_grad=1, comm=c), placement=placement).span
             for c in (None, Comm(latency=0.5), Comm(latency=1), Comm(latency=1, overlap=False))]
    assert spans == sorted(spans) and spans[0] == simulate(table, K, UNIT, placement=placement).span
    memory = {tuple(peak_memory(table, K, costs=Costs(1, 2, input_grad=1, weight_grad=1, comm=c),
                                placement=placement)) for c in (None, Comm(latency=3, overlap=False))}
    assert len(memory) == 1


def test_an_overlapped_cell_run_in_turn_starts_each_half_when_it_can() -> None:
    """DualPipeV: the engine's worker runs an F&B cell's halves in turn, each when its inputs are there;
    the table's cell waits for both. In turn can only be sooner, and the cell keeps DeepSeek's form."""
    table, placement = BUILTINS["dualpipev"].build(8, 4), v_placement(4)
    cell = simulate(table, 4, UNIT, placement=placement).span
    assert cell == 6 * 8 + 2 * (4 - 1)
    assert simulate(table, 4, Costs(1, 2, input_grad=1, weight_grad=1, in_turn=True), placement=placement).span < cell


# -- the engine, with the delays injected --------------------------------------------------------------

def run(name: str, K: int, M: int, comm: Comm) -> tuple[GPipe, list[tuple[str, float]], list[tuple]]:
    """One step of ``name`` on Wait layers that take no time, every hop delayed.

    Returns the pipe, who slept in the mailbox and how long ([(thread, seconds)]), and every call of the
    injected link ([(src stage, dst stage, seconds, sender waits)]).
    """
    b = BUILTINS[name]
    S = K * b.virtual
    slept: list[tuple[str, float]] = []

    def sleep(seconds: float) -> None:
        slept.append((threading.current_thread().name, seconds))
        time.sleep(seconds)

    pipe = GPipe(wait_model(S, 8, 0, 0, 0), balance=[1] * S, virtual=b.virtual, placement=b.placement(K),
                 chunks=M, schedule=name, checkpoint="never", executor="ranks")
    inject(pipe, comm)
    link, calls = pipe._runtime.link, []  # noqa: SLF001 - the hook under test

    def recording(src: int, dst: int, value: object) -> tuple[float, bool]:
        calls.append((src, dst, *link(src, dst, value)))
        return calls[-1][2:]

    pipe._runtime.link = recording  # noqa: SLF001
    x = torch.randn(2 * M, 8)
    original = mailbox.time
    mailbox.time = SimpleNamespace(sleep=sleep, perf_counter=time.perf_counter)  # type: ignore[assignment]
    try:
        pipe.step(x, x, nn.functional.mse_loss, seed=0)
    finally:
        mailbox.time = original  # type: ignore[assignment]
        pipe.close()
    return pipe, slept, calls


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize(("name", "K"), [("1f1b", 2), ("zbv", 2)])
def test_the_engine_waits_out_every_hop_between_devices(name: str, K: int, overlap: bool) -> None:
    """Each message between two devices is read no earlier than its sender's end plus the hop; a blocking
    sender's next action waits the hop too; a hop inside one device (the V's tip) costs nothing."""
    delay = 0.02
    pipe, slept, calls = run(name, K, 4, Comm(latency=delay, overlap=overlap))
    trace, placement = pipe.trace, pipe.placement
    at = boxes(trace)
    worker = [f"gpipe-worker-{placement[s]}" for s in range(len(placement))]
    when = {Action(k, i, s): span for (k, i, s), span in at.items()}  # type: ignore[arg-type]
    crossing = hops(when, None, placement)
    assert crossing and len(crossing) == sum(1 for a in when if send_cost(a, Comm(latency=1), placement))
    for h in crossing:
        sent = at[h.sender.kind, h.sender.microbatch, h.sender.stage][1]
        assert at[h.receiver.kind, h.receiver.microbatch, h.receiver.stage][0] >= sent + delay
    if not overlap:
        for d in set(placement):
            mine = sorted((span, key) for key, span in at.items() if placement[key[2]] == d)
            for (prev, key), (nxt, _) in zip(mine, mine[1:]):
                if send_cost(Action(key[0], key[1], key[2]), Comm(latency=1), placement):  # type: ignore[arg-type]
                    assert nxt[0] >= prev[1] + delay, f"device {d} went on before its send of {key} was done"
    # the link was asked once per message: the hop's delay between devices, nothing inside one
    between = sorted(c for c in calls if placement[c[0]] != placement[c[1]])
    assert between == sorted((h.sender.stage, h.receiver.stage, delay, not overlap) for h in crossing)
    inside = [c for c in calls if placement[c[0]] == placement[c[1]]]
    assert all(c[2:] == (0.0, False) for c in inside) and len(inside) == (4 * 2 if name == "zbv" else 0)
    # who slept: blocking senders, once per hop, the full delay; else only receivers, never more than the delay
    senders = sorted(worker[h.sender.stage] for h in crossing)
    if overlap:
        assert all(0 < s <= delay for _, s in slept)
        assert {t for t, _ in slept} <= {worker[h.receiver.stage] for h in crossing}
    else:
        assert sorted(t for t, _ in slept) == senders and all(s == delay for _, s in slept)


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("name", ["1f1b", "zb-h1", "zbv", "dualpipev"])
def test_the_simulator_never_starts_an_action_later_than_the_engine_did(name: str, overlap: bool) -> None:
    """Given each stage's shortest measured action of each kind and the injected link, the simulator's
    timeline is a lower bound of the engine's: every action starts no later than it really did. Nothing here
    depends on speed: the engine can only add time (a sleep never returns early), never remove it."""
    comm = Comm(latency=0.01, overlap=overlap)
    pipe, _, _ = run(name, 2, 4, comm)
    trace, S = pipe.trace, len(pipe.placement)

    def shortest(kind: str) -> list[float]:
        return [min((e.duration for e in trace.events if e.kind == kind and e.stage == s), default=0.0)
                for s in range(S)]

    costs = Costs(forward=shortest("F"), backward=shortest("B"), input_grad=shortest("I"),
                  weight_grad=shortest("W"), comm=comm, in_turn=True)
    predicted = times(pipe.table, 2, costs, placement=pipe.placement)
    t0 = min(e.start for e in trace.events)
    late = [(str(a), start, at[0] - t0) for a, (start, _) in predicted.items()
            for at in [boxes(trace)[a.kind, a.microbatch, a.stage]] if start > at[0] - t0 + 1e-9]
    assert not late, f"the simulator starts these later than the engine did: {late[:3]}"
    assert max(end for _, end in predicted.values()) >= 2 * comm.latency  # at least a hop there and one back

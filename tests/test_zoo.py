"""The built-in schedules after GPipe: valid tables, and the closed forms their docstrings derive.

Unit costs (gpipe_core.sim.simulate.UNIT): F = I = W = 1, B = 2; "held" is the
peak number of (micro-batch, stage) activations a device keeps, from the
forward's start to the end of its B or W. Every number below is a formula of
gpipe_core.sim.theory, checked against the simulated table.

DualPipe (``zoo.TWO_WAY``) is not iterated here: its table has 2K stage copies
with the chain cut between K-1 and K, which this one-way validator and
simulator do not know; tests/test_dualpipe.py checks it with its own
validator and timer against DeepSeek's closed forms.
"""

from __future__ import annotations

import pytest

from gpipe_core.schedules.schedule import Action, ScheduleError, device_orders, flatten, loop_placement, v_placement
from gpipe_core.schedules.validation import validate
from gpipe_core.schedules.zoo import BUILTINS, interleaved_schedule, zb_h1_schedule, zb_h2_schedule, zbv_schedule
from gpipe_core.sim import theory
from gpipe_core.sim.simulate import UNIT, peak_memory, simulate

SIZES = [(K, M) for K in (1, 2, 3, 4, 5) for M in (1, 2, K, K + 1, 2 * K - 1, 2 * K, 3 * K, 13)]
WHOLE, SPLIT = {"F", "B"}, {"F", "I", "W"}
KINDS = {"gpipe": WHOLE, "1f1b": WHOLE, "interleaved": WHOLE, "looped-bfs": WHOLE, "zb-h1": SPLIT, "zb-h2": SPLIT,
         "zbv": SPLIT, "v-min": SPLIT, "v-half": SPLIT, "v-zb": SPLIT, "dualpipev": WHOLE | SPLIT}


def measure(table: list[list[Action]], K: int, placement: list[int]) -> tuple[float, list[float], list[float]]:
    """(step time, each device's idle time inside its own busy window, peak held per device) under unit costs."""
    trace = simulate(table, K, UNIT, placement=placement)
    inner = []
    for d in range(K):
        events = [e for e in trace.events if placement[e.stage] == d]
        window = max(e.end for e in events) - min(e.start for e in events)
        inner.append(window - sum(e.duration for e in events))
    return trace.span, inner, peak_memory(table, K, costs=UNIT, placement=placement)


@pytest.mark.parametrize("name", sorted(BUILTINS))
@pytest.mark.parametrize(("K", "M"), SIZES)
def test_every_builtin_is_a_valid_table(name: str, K: int, M: int) -> None:
    b = BUILTINS[name]
    placement = b.placement(K)
    assert len(placement) == b.virtual * K and sorted(set(placement)) == list(range(K))
    if name == "dualpipev" and M < 2 * K:  # the one built-in with a condition on M and K: the error names it
        with pytest.raises(ValueError, match=rf"needs M >= 2K .*got M={M}, K={K}.*use M >= {2 * K}"):
            b.build(M, K)
        return
    table = b.build(M, K)
    validate(table, M, K, placement)  # raises, naming the action, if anything is wrong
    assert {a.kind for a in flatten(table)} == KINDS[name]
    for tick in table:  # one cell per device per tick
        devices = [placement[c.stage] for c in tick]
        assert len(devices) == len(set(devices))


@pytest.mark.parametrize(("K", "M"), SIZES)
def test_one_f_one_b_closed_form(K: int, M: int) -> None:
    table = BUILTINS["1f1b"].build(M, K)
    span, inner, held = measure(table, K, list(range(K)))
    assert len(table) == theory.schedule_ticks(M, K) == 2 * (M + K - 1)  # a B cell is one tick, two units
    assert span == theory.step_units("1f1b", M, K) == 3 * (M + K - 1)
    assert 1 - 3 * M / span == pytest.approx(theory.bubble_fraction(M, K))
    assert held == theory.peak_held("1f1b", M, K)


@pytest.mark.parametrize(("K", "M"), SIZES)
def test_zb_h1_closed_form(K: int, M: int) -> None:
    span, inner, held = measure(zb_h1_schedule(M, K), K, list(range(K)))
    assert max(held) <= K  # 1F1B's peak is never exceeded
    if M >= K:
        assert span == theory.step_units("zb-h1", M, K) == 3 * M + K - 1
        assert held == theory.peak_held("zb-h1", M, K) == [K] * K
        # each device is idle K-1 units in all: a third of 1F1B's 3(K-1)
        assert [span - 3 * M] * K == [K - 1] * K
        assert 1 - 3 * M / span == pytest.approx(theory.zb_h1_bubble(M, K))
        assert len(zb_h1_schedule(M, K)) == span  # every cell is one unit: ticks = step time
    assert span >= 3 * M + K - 1


@pytest.mark.parametrize(("K", "M"), SIZES)
def test_zb_h2_closed_form(K: int, M: int) -> None:
    span, inner, held = measure(zb_h2_schedule(M, K), K, list(range(K)))
    assert max(held) <= 2 * K - 1
    if M >= K:
        assert span == theory.step_units("zb-h2", M, K) == 3 * M + K - 1 == len(zb_h2_schedule(M, K))
        assert inner[0] == max(0, 2 * K - 1 - M)  # the first device's wait for its first input gradient
    if M >= 2 * K - 1:
        assert inner == [0] * K  # no bubble inside any device's window: a parallelogram
        assert held == theory.peak_held("zb-h2", M, K) == [2 * K - 1] * K


@pytest.mark.parametrize(("K", "M"), [(K, M) for K in (1, 2, 3, 4) for M in (K, 2 * K, 3 * K)])
def test_interleaved_closed_form(K: int, M: int) -> None:
    V = 2
    placement = loop_placement(K, V)
    span, inner, held = measure(interleaved_schedule(M, K, V), K, placement)
    assert span == theory.step_units("interleaved", M, K, V) == 3 * V * M + 3 * (K - 1)
    assert len(interleaved_schedule(M, K, V)) == 2 * V * M + 2 * (K - 1)
    # idle per device 3(K-1) units against 3VM of work: (K-1)/(VM) of the work
    assert (span - 3 * V * M) / (3 * V * M) == pytest.approx(theory.interleaved_bubble(M, K, V))
    assert held == theory.peak_held("interleaved", M, K, V)


def test_interleaved_with_more_chunks_and_uneven_groups() -> None:
    for V in (3, 4):
        validate(interleaved_schedule(8, 4, V), 8, 4, loop_placement(4, V))
        span, _, _ = measure(interleaved_schedule(8, 4, V), 4, loop_placement(4, V))
        assert span == 3 * V * 8 + 3 * 3
    span, _, _ = measure(interleaved_schedule(6, 4), 4, loop_placement(4, 2))  # M not a multiple of K: still valid
    assert span > 3 * 2 * 6 + 3 * 3


@pytest.mark.parametrize(("K", "M"), [(K, M) for K in (1, 2, 3, 4, 5, 6) for M in (2 * K, 2 * K + 1, 3 * K, 5 * K)])
def test_zbv_closed_form(K: int, M: int) -> None:
    span, inner, held = measure(zbv_schedule(M, K), K, v_placement(K))
    assert span == theory.step_units("zbv", M, K) == 6 * M + K - 1 == len(zbv_schedule(M, K))
    assert inner == [0] * K
    assert held == theory.peak_held("zbv", M, K) == [2 * K] * K  # K whole micro-batches (two chunks each): 1F1B's peak


def test_the_ladder_of_bubbles() -> None:
    """Idle time per device, in whole-stage units, at K=4, M=8: 1F1B 9, ZB-H1 3, ZBV 1.5; interleaved 9 over 2x work."""
    K, M = 4, 8
    idle = {name: measure(BUILTINS[name].build(M, K), K, BUILTINS[name].placement(K))[0] / BUILTINS[name].virtual
            - 3 * M for name in ("1f1b", "zb-h1", "zb-h2", "zbv")}
    assert idle == {"1f1b": 9, "zb-h1": 3, "zb-h2": 3, "zbv": 1.5}


def test_device_orders_follow_the_derivation() -> None:
    orders = device_orders(zb_h1_schedule(4, 2), [0, 1])
    # device 1 (last) lags its W by one micro-batch: F0 I0 F1 I1 W0 ...
    assert [f"{a.kind}{a.microbatch}" for a in orders[1]] == ["F0", "I0", "F1", "I1", "W0", "F2", "I2", "W1",
                                                               "F3", "I3", "W2", "W3"]
    zbv = device_orders(zbv_schedule(4, 2), v_placement(2))
    assert [f"{a.kind}{a.microbatch}:{a.stage}" for a in zbv[0][:5]] == ["F0:0", "F1:0", "F2:0", "F0:3", "I0:3"]


def test_bad_sizes_are_refused() -> None:
    for build in (b.build for b in BUILTINS.values()):
        with pytest.raises(ValueError, match="positive integers"):
            build(0, 2)
    with pytest.raises(ScheduleError):
        validate(zb_h1_schedule(4, 2)[:-1], 4, 2)  # a missing W is named


def test_closed_forms_refuse_sizes_where_they_do_not_hold() -> None:
    assert theory.step_units("zbv", 8, 4) == 51 and theory.step_units("interleaved", 8, 4, 2) == 57
    with pytest.raises(ValueError, match="M >= 2K"):
        theory.step_units("zbv", 7, 4)
    with pytest.raises(ValueError, match="multiple of K"):
        theory.step_units("interleaved", 6, 4)
    with pytest.raises(ValueError, match="no closed form"):
        theory.peak_held("dualpipe", 8, 4)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_gpipe_schedule_shows_every_builtin(name: str, capsys) -> None:  # noqa: ANN001
    from gpipe_core.cli import main

    assert main(["schedule", "--schedule", name, "-K", "4", "-M", "8"]) == 0
    out = capsys.readouterr().out
    b = BUILTINS[name]
    rows = [line for line in out.splitlines() if line.startswith(("stage ", "device "))]
    assert len(rows) == 4 and ("device 0:" in out) == (b.virtual > 1)
    step = measure(b.build(8, 4), 4, b.placement(4))[0]
    assert f"step {step:g}," in out and f"{len(b.build(8, 4))} ticks" in out

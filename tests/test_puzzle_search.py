"""The grader's exact puzzle search: its targets are reachable and tight, checked against brute force.

Tightness rests on the A* bound never overestimating; the brute-force tests
check the search against every rule-abiding schedule on puzzles small enough
to enumerate, with and without split backward, memory caps and virtual stages,
and show that the puzzle rule (each kind in micro-batch order) costs no time.
"""

from __future__ import annotations

import itertools

import pytest

from autograder.judge.puzzle_search import reference_orders, solve, target
from gpipe_core.course.puzzle_ladder import lower_bound
from gpipe_core.course.puzzles import Puzzle, evaluate, score, table_from_orders
from gpipe_core.schedules.schedule import Action
from gpipe_core.sim.simulate import peak_memory, times


def _device_orders(p: Puzzle, device: int, fifo: bool = True) -> list[list[Action]]:
    """Every order of one device's actions (keeping each kind in micro-batch order per stage if ``fifo``)."""
    stages = [s for s in range(p.S) if p.placement[s] == device]
    kinds = ("F", "I", "W") if p.split else ("F", "B")
    out: list[list[Action]] = []

    def walk(done: dict, order: list[Action]) -> None:
        if len(order) == len(stages) * len(kinds) * p.M:
            out.append(list(order))
            return
        for s in stages:
            for k in kinds:
                i = done[s, k]
                if i == p.M:
                    continue
                before = {"F": None, "I": "F", "B": "F", "W": "I"}[k]
                if before and done[s, before] <= i:
                    continue
                done[s, k] += 1
                order.append(Action(k, i, s))
                walk(done, order)
                order.pop()
                done[s, k] -= 1

    if fifo:
        walk({(s, k): 0 for s in stages for k in kinds}, [])
    else:  # any order in which each micro-batch's F comes before its I (or B), and its I before its W
        actions = [Action(k, i, s) for s in stages for k in kinds for i in range(p.M)]
        for order in itertools.permutations(actions):
            pos = {a: n for n, a in enumerate(order)}
            if all(pos[Action("F", a.microbatch, a.stage)] < pos[a] for a in order if a.kind in "IB") and all(
                    pos[Action("I", a.microbatch, a.stage)] < pos[a] for a in order if a.kind == "W"):
                out.append(list(order))
    return [o for o in out if p.cap is None or _peak(o) <= p.cap]


def _peak(order: list[Action]) -> int:
    held = peak = 0
    for a in order:
        held += {"F": 1, "I": 0, "B": -1, "W": -1}[a.kind]
        peak = max(peak, held)
    return peak


def _brute_force(p: Puzzle, fifo: bool = True) -> int:
    best = None
    for orders in itertools.product(*[_device_orders(p, d, fifo) for d in range(p.K)]):
        try:
            got = score(p, [list(o) for o in orders])
        except ValueError:  # deadlock
            continue
        if p.cap is not None and max(got.peak) > p.cap:
            continue
        best = got.time if best is None else min(best, got.time)
    assert best is not None
    return best


SMALL = [
    Puzzle("2x2", K=2, M=2),
    Puzzle("2x3 cap1", K=2, M=3, cap=1),
    Puzzle("2x3 cap2", K=2, M=3, cap=2),
    Puzzle("3x2", K=3, M=2, F=1, B=3),
    Puzzle("2x2 split", K=2, M=2, split=True),
    Puzzle("2x2 split cap1", K=2, M=2, split=True, cap=1),
    Puzzle("2x3 split", K=2, M=3, split=True),
    Puzzle("3x3 split cap2", K=3, M=3, split=True, cap=2),
    Puzzle("3x3 cap2", K=3, M=3, cap=2),
    Puzzle("2x2 uneven split", K=2, M=2, I=2, W=1, B=3, split=True, cap=2),
    Puzzle("2x2 loop cap2", K=2, M=2, V=2, cap=2),
    Puzzle("2x2 v cap2", K=2, M=2, V=2, shape="v", cap=2),
    Puzzle("2x1 v split cap2", K=2, M=1, V=2, shape="v", split=True, cap=2),
]


@pytest.mark.parametrize("p", SMALL, ids=lambda p: p.name)
def test_search_equals_brute_force(p: Puzzle) -> None:
    best, orders = solve(p)
    assert best == _brute_force(p)
    got = score(p, orders)
    assert got.time == best
    assert p.cap is None or max(got.peak) <= p.cap


@pytest.mark.parametrize("p", [Puzzle("2x2 split", K=2, M=2, split=True), Puzzle("2x3", K=2, M=3),
                               Puzzle("3x2 split", K=3, M=2, split=True), Puzzle("2x3 cap2", K=2, M=3, cap=2),
                               Puzzle("2x2 uneven split", K=2, M=2, I=2, W=1, B=3, split=True)],
                         ids=lambda p: p.name)
def test_micro_batch_order_rule_costs_nothing(p: Puzzle) -> None:
    # micro-batches are identical: running them out of order on a stage never beats the rule's best
    assert _brute_force(p, fifo=False) == solve(p)[0]


@pytest.mark.parametrize("p", [Puzzle("v", K=3, M=4, V=2, shape="v", split=True, cap=4),
                               Puzzle("loop", K=2, M=3, V=2, cap=3), Puzzle("fb", K=3, M=5, F=2, B=3, cap=2)],
                         ids=lambda p: p.name)
def test_reference_orders_reach_the_target_and_the_simulator_agrees(p: Puzzle) -> None:
    table = table_from_orders(p, reference_orders(p))
    got = evaluate(p, table)
    assert got.time == target(p) and max(got.peak) <= p.cap
    assert max(end for _, end in times(table, p.K, p.costs, placement=p.placement).values()) == got.time
    assert [int(x) for x in peak_memory(table, p.K, costs=p.costs, placement=p.placement)] == list(got.peak)


def test_closed_forms_without_cap() -> None:
    # F/B only, no cap: 1F1B's (M+K-1)(F+B) is optimal; split, no cap: the parallelogram (K-1)F + M(F+I+W).
    assert target(Puzzle("a", K=3, M=6)) == (6 + 3 - 1) * 3
    assert target(Puzzle("b", K=4, M=8, split=True)) == 3 * 1 + 8 * 3
    assert lower_bound(Puzzle("a", K=3, M=6)) == (6 + 3 - 1) * 3  # the floor is tight where nothing binds


def test_caps_bind() -> None:
    loose, tight = Puzzle("l", K=4, M=8, cap=4), Puzzle("t", K=4, M=8, cap=3)
    assert target(tight) > target(loose)
    assert lower_bound(Puzzle("t2", K=4, M=8, cap=2)) > lower_bound(loose)  # the memory floor sees a tight cap


def test_impossible_cap_is_named() -> None:
    # a V device holds stage 0 and stage 2K-1: micro-batch 0 is held twice before its first backward
    with pytest.raises(ValueError, match="memory cap 1 is too small"):
        solve(Puzzle("v1", K=2, M=1, V=2, shape="v", split=True, cap=1))


def test_v_placement_puts_the_turn_on_one_device() -> None:
    assert Puzzle("v", K=3, M=1, V=2, shape="v").placement == [0, 1, 2, 2, 1, 0]
    assert Puzzle("l", K=3, M=1, V=2).placement == [0, 1, 2, 0, 1, 2]

"""Honest solutions of assignment 07, three learners, written from the notebook's recipe.

Test data for the review (see :mod:`autograder.selftest.honest`). 07's recipe
spells each device's order out step by step, so a learner who follows it
closely writes code close to the engine's: ``jun`` does exactly that, and must
not be flagged. Each learner's puzzles are drawn from their own id
(``honest-<name>``, as the class is collected), and their tables are written
out as text for those puzzles (the orders come from the grader's search here:
test data, not a learner's tool); the learners differ in the code around them.
Every source is one solution cell, keyed by grade id.
"""

from __future__ import annotations

from autograder.judge.puzzle_search import reference_orders
from gpipe_core.course.puzzle_ladder import RUNGS, draw
from gpipe_core.course.puzzles import Puzzle, text_from_orders


def _rows(p: Puzzle) -> list[str]:
    """The learner's device orders for their own drawn puzzle, one quoted line per device."""
    return [repr(line).replace("'", '"') for line in text_from_orders(p, reference_orders(p))]


def _puzzles(style: str) -> dict[str, str]:
    """The nine puzzle cells of ``honest-<style>``: orders written out as text for that student's own puzzles."""
    out = {}
    for n in range(1, len(RUNGS) + 1):
        rows = _rows(draw(f"honest-{style}", n))
        head = f"def puzzle_{n}(p: Puzzle) -> Schedule:\n"
        if style == "jun":
            lines = "".join(f"        {r},\n" for r in rows)
            body = f"    return table_from_text(p, [\n{lines}    ])\n"
        elif style == "kai":
            lines = "".join(f"        {r},\n" for r in rows)
            body = f"    orders = [\n{lines}    ]\n    return table_from_text(p, orders)\n"
        else:
            appended = "".join(f"    rows.append({r})\n" for r in rows)
            body = "    rows = []\n" + appended + "    return table_from_text(p, rows)\n"
        out[f"puzzle_{n}"] = head + body
    return out


ZB = {
    "jun": '''\
def zb_h1(M: int, K: int) -> Schedule:
    if M < 1 or K < 1:
        raise ValueError(f"M={M} and K={K} must be at least 1")
    orders = []
    for d in range(K):
        warmup = min(K - 1 - d, M)
        order = []
        for i in range(warmup):
            order.append(Action("F", i, d))
        next_forward = warmup
        for i in range(M):
            if next_forward < M:
                order.append(Action("F", next_forward, d))
                next_forward += 1
            order.append(Action("I", i, d))
            if i >= d:
                order.append(Action("W", i - d, d))
        for i in range(max(0, M - d), M):
            order.append(Action("W", i, d))
        orders.append(order)
    return ticks_from_orders(orders)
''',
    "kai": '''\
from itertools import chain


def _zb_device(M, K, d):
    w = min(K - 1 - d, M)
    steady = chain.from_iterable(
        ([Action("F", w + i, d)] if w + i < M else [])
        + [Action("I", i, d)]
        + ([Action("W", i - d, d)] if i >= d else [])
        for i in range(M))
    owed = [Action("W", i, d) for i in range(max(M - d, 0), M)]
    return [Action("F", i, d) for i in range(w)] + list(steady) + owed


def zb_h1(M: int, K: int) -> Schedule:
    if not (M >= 1 and K >= 1):
        raise ValueError("zb_h1 needs M >= 1 and K >= 1")
    return ticks_from_orders([_zb_device(M, K, d) for d in range(K)])
''',
    "lena": '''\
from collections import deque


def zb_h1(M: int, K: int) -> Schedule:
    """Device by device: warm-up forwards, then F / I pairs; each device keeps its weight gradients in a queue."""
    if M <= 0 or K <= 0:
        raise ValueError(f"zb_h1({M}, {K}): sizes must be positive")
    per_device = []
    for dev in range(K):
        sequence = [Action("F", m, dev) for m in range(min(K - 1 - dev, M))]
        forwards_done = len(sequence)
        waiting = deque()
        for m in range(M):
            if forwards_done < M:
                sequence.append(Action("F", forwards_done, dev))
                forwards_done += 1
            sequence.append(Action("I", m, dev))
            waiting.append(Action("W", m, dev))
            if len(waiting) > dev:
                sequence.append(waiting.popleft())
        sequence.extend(waiting)
        per_device.append(sequence)
    return ticks_from_orders(per_device)
''',
}

IL = {
    "jun": '''\
def interleaved(M: int, K: int) -> Schedule:
    if M < 1 or K < 1:
        raise ValueError(f"M={M} and K={K} must be at least 1")
    V = 2
    orders = []
    for d in range(K):
        forwards, backwards = [], []
        for start in range(0, M, K):
            group = list(range(start, min(start + K, M)))
            for chunk in range(V):
                for i in group:
                    forwards.append(Action("F", i, chunk * K + d))
            for chunk in range(V - 1, -1, -1):
                for i in group:
                    backwards.append(Action("B", i, chunk * K + d))
        warmup = min(2 * (K - 1 - d) + (V - 1) * K, len(forwards))
        order = forwards[:warmup]
        b = 0
        for f in forwards[warmup:]:
            order.append(f)
            order.append(backwards[b])
            b += 1
        order.extend(backwards[b:])
        orders.append(order)
    return ticks_from_orders(orders, loop_placement(K, V))
''',
    "kai": '''\
def interleaved(M: int, K: int) -> Schedule:
    if not (M >= 1 and K >= 1):
        raise ValueError("interleaved needs M >= 1 and K >= 1")
    starts = range(0, M, K)
    device_orders = []
    for d in range(K):
        fw = [Action("F", i, c * K + d) for s in starts for c in (0, 1) for i in range(s, min(s + K, M))]
        bw = [Action("B", i, c * K + d) for s in starts for c in (1, 0) for i in range(s, min(s + K, M))]
        n = min(len(fw), 2 * (K - 1 - d) + K)
        pairs = [a for f, b in zip(fw[n:], bw) for a in (f, b)]
        device_orders.append(fw[:n] + pairs + bw[len(fw) - n:])
    return ticks_from_orders(device_orders, loop_placement(K, 2))
''',
    "lena": '''\
def _chunk_steps(M, K, d, kind, chunks):
    for first in range(0, M, K):
        for c in chunks:
            for m in range(first, min(first + K, M)):
                yield Action(kind, m, c * K + d)


def interleaved(M: int, K: int) -> Schedule:
    """Megatron's order on each device, from two generators: forwards chunk 0 then 1, backwards 1 then 0."""
    if M <= 0 or K <= 0:
        raise ValueError(f"interleaved({M}, {K}): sizes must be positive")
    placement = loop_placement(K, 2)
    per_device = []
    for dev in range(K):
        fwd = list(_chunk_steps(M, K, dev, "F", (0, 1)))
        bwd = list(_chunk_steps(M, K, dev, "B", (1, 0)))
        ahead = min(len(fwd), 2 * (K - 1 - dev) + K)
        sequence = fwd[:ahead]
        while len(sequence) < len(fwd) + len(bwd):
            done_f = sum(1 for a in sequence if a.kind == "F")
            done_b = len(sequence) - done_f
            if done_f < len(fwd):
                sequence += [fwd[done_f], bwd[done_b]]
            else:
                sequence += bwd[done_b:]
        per_device.append(sequence)
    return ticks_from_orders(per_device, placement)
''',
}

SOURCES: dict[str, dict[str, dict[str, str]]] = {
    "07_beat_the_bubble": {s: {"zb_h1": ZB[s], "interleaved": IL[s], **_puzzles(s)} for s in ("jun", "kai", "lena")},
}

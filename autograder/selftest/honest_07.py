"""Honest solutions of assignment 07, three learners, written from the notebook's recipe.

Test data for the review (see :mod:`autograder.selftest.honest`). 07's recipe
spells each device's order out step by step, so a learner who follows it
closely writes code close to the engine's: ``jun`` does exactly that, and must
not be flagged. The puzzle tables are text (every table is a string to the
review); the learners differ in the code around them. Every source is one
solution cell, keyed by grade id.
"""

from __future__ import annotations

P3 = ['"F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 F6 B4 F7 B5 B6 B7"', '"F0 F1 F2 B0 B1 F3 B2 F4 F5 B3 B4 F6 B5 F7 B6 B7"',
      '"F0 F1 F2 B0 B1 B2 F3 F4 B3 F5 B4 B5 F6 F7 B6 B7"', '"F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 F7 B7"']
P5 = ['"F0 F1 F2 I0 W0 F3 I1 W1 F4 I2 W2 F5 I3 W3 F6 I4 W4 F7 I5 W5 I6 W6 I7 W7"',
      '"F0 F1 F2 I0 W0 I1 F3 I2 W1 F4 W2 I3 F5 W3 I4 F6 I5 W4 F7 W5 I6 W6 I7 W7"',
      '"F0 F1 F2 I0 W0 I1 I2 W1 F3 W2 I3 F4 W3 F5 I4 W4 I5 F6 W5 F7 I6 W6 I7 W7"',
      '"F0 I0 F1 F2 I1 I2 W0 W1 W2 F3 I3 W3 F4 I4 F5 I5 W4 W5 F6 I6 W6 F7 I7 W7"']
P6 = ['"F0 F1 F2 I0 W0 F3 I1 W1 F4 I2 W2 F5 I3 W3 I4 W4 I5 W5"',
      '"F0 F1 F2 I0 W0 I1 F3 I2 W1 F4 I3 W2 F5 I4 W3 I5 W4 W5"',
      '"F0 I0 F1 F2 I1 I2 W0 F3 I3 W1 F4 I4 W2 F5 I5 W3 W4 W5"']
P7 = ['"F0:0 F1:0 F2:0 F0:3 F3:0 F1:3 B0:3 F4:0 B1:3 F2:3 B0:0 F3:3 B1:0 F5:0 B2:3 F4:3 B3:3 F5:3 B2:0 B4:3 B5:3 '
      'B3:0 B4:0 B5:0"',
      '"F0:1 F1:1 F2:1 F0:4 F3:1 F1:4 B0:4 B1:4 F4:1 B0:1 F2:4 B1:1 F3:4 B2:4 F5:1 B3:4 F4:4 B2:1 F5:4 B4:4 B5:4 '
      'B3:1 B4:1 B5:1"',
      '"F0:2 F1:2 F2:2 F0:5 B0:5 F1:5 B1:5 F3:2 B0:2 F4:2 B1:2 F2:5 B2:5 F3:5 B3:5 F5:2 B2:2 F4:5 B4:5 F5:5 B5:5 '
      'B3:2 B4:2 B5:2"']
P8 = ['"F0:0 F1:0 F2:0 F3:0 F4:0 F0:5 I0:5 W0:5 F1:5 I0:0 I1:5 W0:0 F5:0 W1:5 F2:5 I2:5 I1:0 W1:0 W2:5 F3:5 I3:5 '
      'I2:0 W2:0 F4:5 I4:5 F5:5 I5:5 I3:0 W3:0 W3:5 I4:0 W4:0 W4:5 I5:0 W5:0 W5:5"',
      '"F0:1 F1:1 F2:1 F0:4 F3:1 F4:1 I0:4 W0:4 F1:4 I0:1 W0:1 I1:4 F2:4 W1:4 F5:1 I1:1 W1:1 I2:4 F3:4 W2:4 I2:1 '
      'W2:1 F4:4 I3:4 F5:4 I4:4 I3:1 W3:1 I5:4 I4:1 W4:1 W3:4 I5:1 W5:1 W4:4 W5:4"',
      '"F0:2 F0:3 F1:2 F2:2 F3:2 F1:3 I0:3 I0:2 W0:2 F4:2 W0:3 F2:3 I1:3 I1:2 W1:2 F5:2 W1:3 F3:3 I2:3 I2:2 W2:2 '
      'F4:3 W2:3 F5:3 I3:3 I3:2 W3:2 I4:3 I4:2 W4:2 I5:3 I5:2 W5:2 W3:3 W4:3 W5:3"']
P9 = ['"F0:0 F1:0 F2:0 F0:5 I0:5 W0:5 F1:5 I0:0 I1:5 W0:0 F3:0 W1:5 F2:5 I2:5 I1:0 W1:0 F4:0 W2:5 F3:5 I3:5 I2:0 '
      'W2:0 F5:0 W3:5 F4:5 I4:5 I3:0 W3:0 W4:5 F5:5 I5:5 I4:0 W4:0 W5:5 I5:0 W5:0"',
      '"F0:1 F1:1 F2:1 F0:4 I0:4 W0:4 F1:4 I0:1 W0:1 I1:4 F2:4 W1:4 F3:1 I1:1 W1:1 I2:4 F3:4 W2:4 F4:1 I2:1 W2:1 '
      'I3:4 F4:4 W3:4 F5:1 I3:1 W3:1 I4:4 F5:4 W4:4 I4:1 I5:4 W4:1 W5:4 I5:1 W5:1"',
      '"F0:2 F0:3 F1:2 F1:3 I0:3 I0:2 W0:2 F2:2 W0:3 F2:3 I1:3 I1:2 W1:2 F3:2 W1:3 F3:3 I2:3 I2:2 W2:2 F4:2 W2:3 '
      'F4:3 I3:3 I3:2 W3:2 F5:2 W3:3 F5:3 I4:3 I4:2 W4:2 W4:3 I5:3 I5:2 W5:2 W5:3"']
ROWS = {3: P3, 5: P5, 6: P6, 7: P7, 8: P8, 9: P9}


def _rows(rows: list[str], indent: str) -> str:
    return ",\n".join(indent + r for r in rows)


def _puzzles(style: str) -> dict[str, str]:
    """The nine puzzle cells in one learner's style (1, 2 and 4 from earlier tables, the rest as text)."""
    out = {}
    for n in range(1, 10):
        head = f"def puzzle_{n}() -> Schedule:\n"
        if n in (1, 2):
            M, K = (4, 2) if n == 1 else (8, 4)
            body = {"jun": f"    return one_f_one_b_schedule({M}, {K})\n",
                    "kai": f"    M, K = {M}, {K}\n    return one_f_one_b_schedule(M, K)\n",
                    "lena": f"    table = one_f_one_b_schedule(M={M}, K={K})\n    return table\n"}[style]
        elif n == 4:
            body = {"jun": "    return zb_h1(8, 4)\n", "kai": "    return zb_h1(M=8, K=4)\n",
                    "lena": "    devices, micro_batches = 4, 8\n    return zb_h1(micro_batches, devices)\n"}[style]
        elif style == "jun":
            body = f"    return table_from_text(LADDER[{n - 1}], [\n{_rows(ROWS[n], ' ' * 8)},\n    ])\n"
        elif style == "kai":
            body = (f"    puzzle = LADDER[{n - 1}]\n    orders = [\n{_rows(ROWS[n], ' ' * 8)},\n    ]\n"
                    "    return table_from_text(puzzle, orders)\n")
        else:
            body = ("    rows = []\n" + "".join(f"    rows.append({r})\n" for r in ROWS[n])
                    + f"    return table_from_text(LADDER[{n} - 1], rows)\n")
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

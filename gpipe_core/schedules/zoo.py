"""The schedules after GPipe, as tables the same engine checks, runs, times and draws.

Each builder returns a table (``list[list[Action]]``, one list per tick, at
most one action per *device* per tick) for M micro-batches on K devices.
:data:`BUILTINS` is the engine's one registry of named schedules (the two classic
ones of :mod:`gpipe_core.schedules.schedule` included) and :func:`lookup` finds an entry,
for ``GPipe(schedule=...)``, ``gpipe schedule`` and the torch export;
:func:`gpipe_core.schedules.validation.resolve` turns a name or a table into a checked table.

How we count, here and in the tests: every cell of a table is one tick. Under
*unit costs* a forward F, an input gradient I and a weight gradient W each take
one unit of time and a whole backward B takes two (B = I + W); a stage here is
one model chunk, so with V chunks per device a unit is 1/V of a whole device's
forward. "Held" counts micro-batches a stage has run forward on and not yet
finished backward for (its last W or its B), summed over the device's stages.

* **1F1B** (in :mod:`gpipe_core.schedules.schedule`): step time 3(M+K-1) units, every
  device idle 3(K-1) of them, bubble (K-1)/(M+K-1); device d holds K-d.
* **Interleaved 1F1B** (Narayanan et al. 2021, Megatron-LM): V chunks per
  device in loop placement (stage s on device s mod K), so a micro-batch loops
  through the devices V times. Each device's forwards go in groups of K
  micro-batches, chunk by chunk; it warms up with 2(K-1-d) + (V-1)K forwards,
  then alternates one forward and one backward. The fill and the drain still
  cross K-1 devices, but each crossing is one *chunk*, so the idle time per
  device stays 3(K-1) units while the work grows to 3VM (M a multiple of K;
  other M still give valid, slower tables): the bubble relative to the work
  is (K-1)/(VM), V times smaller than 1F1B's (K-1)/M, paid for by
  more activations held (device d: 2(K-1-d) + (V-1)K + 1 chunks) and V times
  more hand-offs.
* **ZB-H1** (Qi et al. 2024, "Zero Bubble Pipeline Parallelism", arXiv:2401.10241):
  1F1B with every B split into I then W, and device d running W(i) only after
  I(i+d). The input gradients, which the device upstream waits for, then move
  one unit per device instead of two, and the deferred W's exactly fill the
  drain: step time 3M + K - 1 for M >= K, each device idle K-1 units, a third
  of 1F1B's. Device d holds (K-1-d) warm-up + 1 + d deferred = K micro-batches,
  1F1B's peak (device 0's), now on every device.
* **ZB-H2** (same paper): the first device's first input gradient cannot come
  back before tick 2K-1, so to never idle it must run 2K-1 forwards first. Give
  every device room for 2K-1 micro-batches and let it, at each tick, run an
  input gradient if one is ready (the critical path), else a forward if it
  holds fewer than 2K-1, else its oldest deferred W. Each device then works
  without a gap from its first forward to its last W (a parallelogram: device d
  busy over [d, d+3M)) when M >= 2K-1; the synchronous step is 3M + K - 1, the
  K-1 being the last device's unavoidable wait for its first input. With
  K <= M < 2K-1 the first device idles 2K-1-M units inside its window.
* **ZBV** (the V-shaped schedule of the same authors' follow-up, "Pipeline
  Parallelism with Controllable Memory", arXiv:2405.15362, and their
  repository): V = 2 chunks per device in a V (device d holds stages d and
  2K-1-d, so device 0 holds the first and the last). Device d warms up with
  2(K-d)-1 forwards on its down chunk, then alternates up and down forwards
  until its first input gradient (up chunk) arrives; from then on it runs
  triples "F, I, W" of one chunk, K-d up-chunk triples first (the first one's
  F ran in the warm-up) and then down and up in turn, and once its forwards
  are placed it runs any ready input gradient (down chunk first) or else its
  oldest W. (The warm-up and the triples follow the layout torch's
  ScheduleZBVZeroBubble prints for small K and M; the cool-down rule is ours,
  and tests/test_torch_ir.py checks both reach the same step time.) Held: 2K
  chunks on every device,
  which is K whole micro-batches, 1F1B's peak. For M >= 2K each device is busy
  without a gap over its window and the step is 6M + K - 1 chunk units, i.e.
  3M + (K-1)/2 in whole-stage units: half of ZB-H1's bubble.

The frontier, each in a module of its own with its derivation and closed
forms: **looped BFS** (:mod:`gpipe_core.schedules.breadth_first`, torch's
ScheduleLoopedBFS), **DualPipeV** (:mod:`gpipe_core.schedules.dualpipe`, torch's
ScheduleDualPipeV, with overlapped F&B cells; needs M >= 2K), and the
controllable-memory **V-Min**, **V-Half** and **V-ZB** (:mod:`gpipe_core.schedules.vshape`).
DualPipe proper (two directions, parameters held twice) is a table of the same
cells in :mod:`gpipe_core.schedules.bidirectional`, but over 2K stage *copies* with its
chain cut between copies K-1 and K and M/2 micro-batches per direction. It is
listed apart, in :data:`TWO_WAY` (its entry says ``two_way``; :func:`lookup`
finds both): ``GPipe(schedule="dualpipe")`` and ``gpipe schedule`` take it,
while the consumers that iterate :data:`BUILTINS`
(the one-way validator, simulator, explorer, torch export) assume one route
0..S-1 for every micro-batch, which its table does not have.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .bidirectional import dualpipe_schedule
from .breadth_first import looped_bfs_schedule
from .dualpipe import dualpipev_schedule
from .schedule import (
    Action,
    Schedule,
    ScheduleError,
    check_sizes,
    gpipe_schedule,
    loop_placement,
    one_f_one_b_schedule,
    ticks_from_orders,
    v_placement,
)
from .tick_fill import Counts, fill_ticks, v_drain
from .vshape import v_half_schedule, v_min_schedule, v_zb_schedule


@dataclass(frozen=True)
class Builtin:
    """A named schedule: ``build(M, K)`` gives its table, ``placement(K)`` its stages' devices (V per device).

    ``two_way``: a table over 2K stage copies with the chain cut (:data:`TWO_WAY`), which GPipe runs with
    :class:`~gpipe_core.engine.two_way.TwoWayPipe` and the one-way validator refuses.
    """

    name: str
    build: Callable[[int, int], Schedule]
    virtual: int
    placement: Callable[[int], list[int]]
    two_way: bool = False


def interleaved_schedule(M: int, K: int, V: int = 2) -> Schedule:
    """Interleaved 1F1B: V chunks per device, stage s on device s mod K (see the module docstring)."""
    check_sizes(M, K)
    orders = []
    groups = [range(g, min(g + K, M)) for g in range(0, M, K)]  # K micro-batches at a time, the last group short
    for d in range(K):
        forwards = [Action("F", i, v * K + d) for g in groups for v in range(V) for i in g]
        backwards = [Action("B", i, v * K + d) for g in groups for v in reversed(range(V)) for i in g]
        warmup = min(len(forwards), 2 * (K - 1 - d) + (V - 1) * K)
        order = forwards[:warmup]
        for f, b in zip(forwards[warmup:], backwards):
            order += [f, b]
        order += backwards[len(forwards) - warmup:]
        orders.append(order)
    try:
        return ticks_from_orders(orders, loop_placement(K, V))
    except ScheduleError:  # a short last group can leave a device waiting on itself (e.g. K=5, M=7)
        multiple = K * -(-M // K)
        raise ValueError(f"interleaved 1F1B groups micro-batches K={K} at a time, and M={M} leaves a last group "
                         f"that deadlocks: use M a multiple of K, e.g. M={multiple}") from None


def zb_h1_schedule(M: int, K: int) -> Schedule:
    """ZB-H1: 1F1B with B split into I and W, W(i) on device d after I(i+d) (see the module docstring)."""
    check_sizes(M, K)
    orders = []
    for d in range(K):
        warmup = min(K - 1 - d, M)
        order = [Action("F", i, d) for i in range(warmup)]
        for i in range(M):
            if warmup + i < M:
                order.append(Action("F", warmup + i, d))
            order.append(Action("I", i, d))
            if i - d >= 0:
                order.append(Action("W", i - d, d))
        order += [Action("W", i, d) for i in range(max(0, M - d), M)]
        orders.append(order)
    return ticks_from_orders(orders)


def zb_h2_schedule(M: int, K: int) -> Schedule:
    """ZB-H2: room for 2K-1 micro-batches per device; I first, then F, then the oldest W (module docstring)."""
    check_sizes(M, K)
    cap = 2 * K - 1

    def choose(d: int, ready: Callable[[Action], bool], n: Counts) -> Action | None:
        for a in (n.next("I", d), n.next("F", d) if n.held(d) < cap else None, n.oldest_w(d)):
            if a is not None and ready(a):
                return a
        return None

    return fill_ticks(M, list(range(K)), [[] for _ in range(K)], choose)


def zbv_schedule(M: int, K: int) -> Schedule:
    """ZBV: the V-shaped zero-bubble schedule, V=2 chunks per device (see the module docstring)."""
    check_sizes(M, K)
    placement = v_placement(K)
    queues = [_zbv_order(M, K, d) for d in range(K)]
    return fill_ticks(M, placement, queues, v_drain(K))


def _zbv_order(M: int, K: int, d: int) -> list[Action]:
    """Device d's fixed part of ZBV: the warm-up forwards and the steady 'F, I, W' triples."""
    down, up = d, 2 * K - 1 - d
    order = [Action("F", i, down) for i in range(min(2 * (K - d) - 1, M))]
    nf = {down: len(order), up: 0}
    ni = {down: 0, up: 0}
    for k in range(d + 1):  # up and down forwards in turn until the first input gradient arrives
        for s in ((up, down) if k < d else (up,)):
            if nf[s] < M:
                order.append(Action("F", nf[s], s))
                nf[s] += 1
    sides = [up] * (K - d)
    turn = 0
    while nf[down] < M or nf[up] < M:
        if sides:
            s = sides.pop(0)
        else:
            s, turn = (down, up)[turn % 2], turn + 1
        if nf[s] < M and not (s == up and ni[up] == 0):  # the first up triple's F ran in the warm-up
            order.append(Action("F", nf[s], s))
            nf[s] += 1
        if ni[s] < M:
            order += [Action("I", ni[s], s), Action("W", ni[s], s)]
            ni[s] += 1
    return order


def _one_per_device(K: int) -> list[int]:
    return list(range(K))


BUILTINS: dict[str, Builtin] = {
    b.name: b for b in (
        Builtin("gpipe", gpipe_schedule, 1, _one_per_device),
        Builtin("1f1b", one_f_one_b_schedule, 1, _one_per_device),
        Builtin("interleaved", interleaved_schedule, 2, lambda K: loop_placement(K, 2)),
        Builtin("zb-h1", zb_h1_schedule, 1, _one_per_device),
        Builtin("zb-h2", zb_h2_schedule, 1, _one_per_device),
        Builtin("zbv", zbv_schedule, 2, v_placement),
        Builtin("looped-bfs", looped_bfs_schedule, 2, lambda K: loop_placement(K, 2)),
        Builtin("dualpipev", dualpipev_schedule, 2, v_placement),
        Builtin("v-min", v_min_schedule, 2, v_placement),
        Builtin("v-half", v_half_schedule, 2, v_placement),
        Builtin("v-zb", v_zb_schedule, 2, v_placement),
    )
}


# Two-way schedules: tables over 2K stage copies (placement v_placement(K)), the chain cut between copies K-1 and
# K; GPipe runs them with engine.two_way.TwoWayPipe, schedules.bidirectional checks and times them.
TWO_WAY: dict[str, Builtin] = {"dualpipe": Builtin("dualpipe", dualpipe_schedule, 2, v_placement, two_way=True)}


def lookup(name: str) -> Builtin:
    """The entry for a schedule name, in any case, one-way or two-way: the one place a name is resolved."""
    entry = BUILTINS.get(name.lower()) or TWO_WAY.get(name.lower())
    if entry is None:
        raise ValueError(f"unknown schedule {name!r}: use one of {sorted(BUILTINS) + sorted(TWO_WAY)} or pass a table")
    return entry

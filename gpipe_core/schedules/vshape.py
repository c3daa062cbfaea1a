"""V-Min, V-Half and V-ZB: the controllable-memory V schedules (Qi et al. 2024, arXiv:2405.15362).

Why a building block: that paper writes a schedule as one *building block*
(where each device runs each pass of one micro-batch) repeated every few
units, and shows that the block's *lifespan* (from a chunk's forward to its
last backward) decides the peak activation memory. Shorter lifespans, less
memory; the price is paid in the fill and the drain.

Layout: K devices, 2K stages in a V (:func:`~gpipe_core.schedules.schedule.v_placement`):
device d holds the down stage d and the up stage 2K-1-d. Per micro-batch a
device runs six unit passes: F of the down stage, F of the up stage, I of
the up stage (its backward comes first), I of the down stage, and the two
W's. The block is repeated every 6 units, so in the steady state a device
is never idle. Its offsets (the time of micro-batch 0's pass on device d;
micro-batch n's is 6n later) are the authors' (``zbv_greedy.py`` in
sail-sg/zero-bubble-pipeline-parallelism): each hop costs one unit, so a
micro-batch's forward reaches the tip of the V just as the next device
finishes.

* V-Min: F down at d, F up at 2K-1-d, I up at 2K+g+d, I down at 4K+g-1-d
  (g = 2 when 3 divides K, else 0: without it two passes of device 0
  would share a slot).
* V-Half: F down at 2d, F up at 3K-2-d, I up at 3K+g-1+2d, I down at
  6K+g-2-d (g = 3 when K is even, else 0); the down forwards and the up
  input gradients move two units a hop, which doubles their lifespans.

Our construction from the block, exact and short: (1) lay out each device's
passes at their offsets, dropping the micro-batches that do not exist
(n < 0 or n >= M); (2) walking each device's slots in time, a slot without a
pass takes the oldest weight gradient W whose I has run (the W's fill the
two free slots of each period, and the fill and the drain); (3) squeeze:
each device runs its order as early as the dependencies allow (the one
walker of :mod:`gpipe_core.schedules.schedule`). The authors then also move passes of
the fill into earlier free slots when that does not raise the peak; for
V-Min and V-Half we do not, so their drain-and-fill bubble is the block's
own (V-ZB's fill and drain are reordered, below).

Closed forms under unit costs (F = I = W = 1 per stage, a stage being
1/(2K) of the model; 6M units of work per device), for M >= K, checked for
K = 1..8 in tests/test_frontier.py (held counts stages; two make one
micro-batch's worth on a device, the unit of the paper's table):

* V-Min: peak held 2 floor((K+4)/3) stages, i.e. floor((p+4)/3) micro-batches
  (the paper's figure for V-Min, about a third of 1F1B's p); devices
  d = 0 mod 3 hold 2 less when K = 2 mod 3. Step 6M + 4(K-1) - 1 (+ 1 when
  3 divides K; 6M for K = 1): each device idles about 4(K-1), two thirds of
  1F1B's 6(K-1) in these units, the paper's bubble of about 2p/3m.
* V-Half: peak held 2 floor((K+2)/2) stages on every device (M >= K+1), i.e.
  floor((p+2)/2) micro-batches (the paper's, half of 1F1B's). Step
  6M + (7(K-1) + 3 [K even]) / 2: idle about 3.5(K-1), 7/12 of 1F1B's; the
  paper's reordered fill brings it to about half (its p/2m).

V-ZB, a block whose lifespan is 1F1B's. The paper's table gives V-ZB an
activation memory of p micro-batches and a bubble of about 0. Its block is
the steady state of ZB-V (:func:`gpipe_core.schedules.zoo.zbv_schedule`, the
zero-bubble paper's V, which holds p): its middle micro-batches repeat, every
6 units, F down at 4d, F up at 6K-3-2d, I up at 6K-2+4d, I down at 12K-5-2d,
each W one unit after its I (tests/test_frontier.py checks it). The down
forwards and the up input gradients move four units a hop, the others two.

Repeated and squeezed as it stands, that block idles each device 2(K-1)
units (:func:`v_zb_block_schedule`): its fill starts the up chunk late. The
authors reorder the fill without raising the peak (``v_auto_schedule.py`` in
their repository, the warm-up rules in its docstring), and so do we, in our
own construction (:func:`v_zb_schedule`):

1. fill: device d runs 2(K-1-d) down forwards, then d+1 pairs "down, up"
   (2K-1-d down and d+1 up forwards in all: 2K stages held, the peak);
2. steady state: the block's own order for every pass not yet run, up to the
   device's last forward;
3. drain, tick by tick: a ready input gradient (down chunk first), else the
   oldest pending W (:func:`gpipe_core.schedules.tick_fill.fill_ticks`).

Each device then works without a gap from its first pass to its last; the
only idle time is the K-1 units the last device waits for its first input,
the floor for a step timed on its own (the authors' "zero" counts each
device's own window, the next iteration's forwards filling the edges).
Under unit costs, for M >= 2K-1, checked for K = 1..8 in
tests/test_frontier.py:

* V-ZB: step 6M + K - 1 (3M + (K-1)/2 in whole-stage units: half of ZB-H1's
  bubble, ZB-V's step); peak held 2K stages on every device, i.e. p
  micro-batches (the paper's, 1F1B's peak). For any M the peak is
  min(2K, 2M, M+1+d) on device d; below 2K-1 micro-batches the fill cannot
  be covered and the step is longer, never longer than the block's.
* The block alone (:func:`v_zb_block_schedule`): the same memory, step
  6M + 2(K-1) + 2 max(0, K-M): each device idles 2(K-1), a third of 1F1B's.
"""

from __future__ import annotations

from collections.abc import Callable

from .actions import Action, Cell
from .schedule import Schedule, check_sizes, ticks_from_orders, v_placement
from .tick_fill import fill_ticks, v_drain

PERIOD = 6  # F down, F up, I up, I down, and two W's: one micro-batch's passes on one device
Block = tuple[int, ...]  # micro-batch 0's F down, F up, I up, I down [, W up, W down] on one device


def v_min_offsets(K: int, d: int) -> tuple[int, int, int, int]:
    """V-Min's block on device d: when micro-batch 0's F down, F up, I up and I down run."""
    g = 2 if K % 3 == 0 else 0
    return d, 2 * K - 1 - d, 2 * K + g + d, 4 * K + g - 1 - d


def v_half_offsets(K: int, d: int) -> tuple[int, int, int, int]:
    """V-Half's block on device d: when micro-batch 0's F down, F up, I up and I down run."""
    g = 3 if K % 2 == 0 else 0
    return 2 * d, 3 * K - 2 - d, 3 * K + g - 1 + 2 * d, 6 * K + g - 2 - d


def v_zb_offsets(K: int, d: int) -> tuple[int, int, int, int, int, int]:
    """V-ZB's block on device d: micro-batch 0's F down, F up, I up, I down, W up and W down."""
    i_up, i_down = 6 * K - 2 + 4 * d, 12 * K - 5 - 2 * d
    return 4 * d, 6 * K - 3 - 2 * d, i_up, i_down, i_up + 1, i_down + 1


def v_min_schedule(M: int, K: int) -> Schedule:
    """V-Min: about a third of 1F1B's activation memory (see the module docstring)."""
    return block_schedule(M, K, v_min_offsets)


def v_half_schedule(M: int, K: int) -> Schedule:
    """V-Half: half of 1F1B's activation memory (see the module docstring)."""
    return block_schedule(M, K, v_half_offsets)


def v_zb_block_schedule(M: int, K: int) -> Schedule:
    """V-ZB's block repeated and squeezed, fill and drain as they fall: 1F1B's memory, a third of its bubble."""
    return block_schedule(M, K, v_zb_offsets)


def v_zb_schedule(M: int, K: int) -> Schedule:
    """V-ZB: the block with its fill and drain reordered; 1F1B's memory, no gap inside a device's window for
    M >= 2K-1 (see the module docstring)."""
    check_sizes(M, K)
    queues = []
    for d in range(K):
        down, up = d, 2 * K - 1 - d
        n_down, n_up = min(2 * K - 1 - d, M), min(d + 1, M)
        fill = [Action("F", n, down) for n in range(min(2 * (K - 1 - d), n_down))]
        i, j = len(fill), 0
        while i < n_down or j < n_up:  # then "down, up" in pairs
            if i < n_down:
                fill.append(Action("F", i, down))
                i += 1
            if j < n_up:
                fill.append(Action("F", j, up))
                j += 1
        filled = set(fill)
        steady = [a for a in _block_passes(M, K, d, v_zb_offsets(K, d)) if a not in filled]
        last_forward = max((i for i, a in enumerate(steady) if a.kind == "F"), default=-1)
        queues.append(fill + steady[:last_forward + 1])
    return fill_ticks(M, v_placement(K), queues, v_drain(K))


def _block_passes(M: int, K: int, d: int, offsets: Block) -> list[Action]:
    """Device d's six passes of every micro-batch in the order the repeated block puts them."""
    down, up = d, 2 * K - 1 - d
    kinds = (("F", down), ("F", up), ("I", up), ("I", down), ("W", up), ("W", down))
    slots = [(offset + PERIOD * n, Action(kind, n, s))  # type: ignore[arg-type]
             for (kind, s), offset in zip(kinds, offsets) for n in range(M)]
    return [a for _, a in sorted(slots)]


def block_schedule(M: int, K: int, offsets: Callable[[int, int], Block]) -> Schedule:
    """Repeat a V building block every 6 units, then squeeze. A block of four passes leaves two free slots
    a period, which the W's fill, oldest first; a block of six places its W's itself."""
    check_sizes(M, K)
    return ticks_from_orders([_device_order(M, K, d, offsets(K, d)) for d in range(K)], v_placement(K))


def _device_order(M: int, K: int, d: int, offsets: Block) -> list[Cell]:
    down, up = d, 2 * K - 1 - d
    slots: dict[int, Action] = {}
    passes = (("F", down), ("F", up), ("I", up), ("I", down), ("W", up), ("W", down))
    for (kind, stage), offset in zip(passes, offsets):
        for n in range(M):
            t = offset + PERIOD * n
            if t in slots:
                raise AssertionError(f"the block puts {slots[t]} and {kind}{n}@stage{stage} in one slot: "
                                     "a bug in gpipe_core.schedules.vshape's offsets")
            slots[t] = Action(kind, n, stage)  # type: ignore[arg-type]
    order: list[Cell] = []
    waiting: list[Action] = []  # W's whose I has run, oldest first
    t, last = 0, max(slots)
    while t <= last or waiting:
        if t in slots:
            order.append(slots[t])
            if slots[t].kind == "I" and len(offsets) == 4:
                waiting.append(Action("W", slots[t].microbatch, slots[t].stage))
        elif waiting:
            order.append(waiting.pop(0))
        t += 1
    return order

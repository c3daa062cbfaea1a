"""DualPipeV (DeepSeek-V3's DualPipe, cut in half) as a table of the engine's own cells.

Why here and exact: torch.distributed.pipelining ships ``ScheduleDualPipeV``
(a port of deepseek-ai/DualPipe's ``dualpipev.py``), so the course can hold
its table to the real thing action for action (tests/test_frontier.py
compares our per-device orders with torch's), and the engine runs it.

Layout. K devices, S = 2K stages in a V (:func:`~gpipe_core.schedules.schedule.v_placement`):
device d holds the *down* stage d and the *up* stage 2K-1-d, so device 0
holds the first and the last stage. DeepSeek calls them chunk 0 and chunk 1.

The order of device d, in the eight steps of the reference implementation
(``F``/``B``/``I`` of the down or the up stage; every I queues its W, and
"W" runs the oldest queued one):

1. 2(K-1-d) forwards of the down stage (the fill reaches the tip of the V);
2. d+1 pairs "F down, F up";
3. K-1-d triples "I up, W, F up" (zero-bubble: the W fills the wait for the next input);
4. the steady state, M-2K+d+1 times: overlapped F&B "F down & B up", then "F up & B down"
   (the last device's very first pair is not overlapped but run as F down, then B up);
5. K-1-d times: "B up", then the overlapped "F up & B down";
6. d+1 pairs "up, down" of backwards: whole B for the first half, I from the
   middle on (the up one first on odd devices, the down one on even);
7. K-1-d pairs "W, I down";
8. d+1 W's: the queue is empty at the end.

Counting each stage's forwards and backwards over the steps gives exactly M
of each, which is why the schedule needs M >= 2K: step 4 runs M-2K+d+1 times
(DeepSeek asserts ``num_chunks >= num_ranks * 2``, torch ``n_microbatches >=
num_stages``).

Closed forms under unit costs (F = I = W = 1 and B = 2 per stage, a stage
being 1/(2K) of the model; an overlapped F&B costs F + B = 3, what the CPU
engine's worker takes, as it runs the two halves in turn), checked for
K = 1..6 and M = 2K..5K in tests/test_frontier.py:

* step time 6M + 2(K-1): 6M of work per device (2M forwards and 2M
  backwards of a stage), every device idle 2(K-1), which is DeepSeek's bubble
  (PP/2-1)(F&B + B - 3W) with PP = 2K stages: (K-1)(3 + 2 - 3). An F&B
  cheaper than F + B (compute hiding communication on a GPU) shortens the
  overlapped cells; ``Costs(overlap=...)`` lets the simulator show by how much.
* peak activations held 2K+1 stages on every device: DeepSeek's "PP+1"
  with PP = 2K (a stage is half of a device's share, so K + 1/2 micro-batches'
  worth, 1F1B's K plus half a micro-batch).
* parameters: each device holds two stages of 1/(2K) of the model, 1/K in all,
  as in 1F1B (DualPipe proper holds 2/K: the "2x" of DeepSeek's table).
"""

from __future__ import annotations

from .actions import Action, Cell, Overlap
from .schedule import Schedule, check_sizes, ticks_from_orders, v_placement


def dualpipev_schedule(M: int, K: int) -> Schedule:
    """DualPipeV for M micro-batches on K devices (2K stages in a V); needs M >= 2K (see the module docstring)."""
    check_sizes(M, K)
    if M < 2 * K:
        raise ValueError(f"DualPipeV needs M >= 2K micro-batches, twice the devices (got M={M}, K={K}): "
                         f"use M >= {2 * K}, or a schedule without that condition such as 'zbv' or '1f1b'")
    return ticks_from_orders([device_order(M, K, d) for d in range(K)], v_placement(K))


class _Device:
    """One device's order as it is written: per-stage counters and the queue of W's its I's left."""

    def __init__(self) -> None:
        self.order: list[Cell] = []
        self.forwards: dict[int, int] = {}
        self.backwards: dict[int, int] = {}
        self.weights: list[Action] = []

    def forward(self, stage: int) -> Action:
        i = self.forwards.get(stage, 0)
        self.forwards[stage] = i + 1
        return Action("F", i, stage)

    def backward(self, stage: int, split: bool) -> Action:
        """The next backward of ``stage``: an I that queues its W, or a whole B."""
        i = self.backwards.get(stage, 0)
        self.backwards[stage] = i + 1
        if split:
            self.weights.append(Action("W", i, stage))
        return Action("I" if split else "B", i, stage)

    def run(self, *cells: Cell) -> None:
        self.order.extend(cells)

    def weight(self) -> None:
        if self.weights:
            self.order.append(self.weights.pop(0))

    def overlap(self, forward_stage: int, backward_stage: int) -> None:
        self.run(Overlap(self.forward(forward_stage), self.backward(backward_stage, split=False)))


def device_order(M: int, K: int, d: int) -> list[Cell]:
    """Device d's cells, step by step as the module docstring lists them."""
    down, up, dev = d, 2 * K - 1 - d, _Device()
    for _ in range(2 * (K - 1 - d)):                       # 1: fill
        dev.run(dev.forward(down))
    for _ in range(d + 1):                                 # 2: F down, F up
        dev.run(dev.forward(down))
        dev.run(dev.forward(up))
    for _ in range(K - 1 - d):                             # 3: I up, W, F up
        dev.run(dev.backward(up, split=True))
        dev.weight()
        dev.run(dev.forward(up))
    for n in range(M - 2 * K + d + 1):                     # 4: the overlapped steady state
        if n == 0 and d == K - 1:
            dev.run(dev.forward(down))
            dev.run(dev.backward(up, split=False))
        else:
            dev.overlap(down, up)
        dev.overlap(up, down)
    for _ in range(K - 1 - d):                             # 5: B up, F up & B down
        dev.run(dev.backward(up, split=False))
        dev.overlap(up, down)
    split = False
    for n in range(d + 1):                                 # 6: backwards, split from the middle on
        split = split or (n == (d + 1) // 2 and d % 2 == 1)
        dev.run(dev.backward(up, split))
        split = split or (n == (d + 1) // 2 and d % 2 == 0)
        dev.run(dev.backward(down, split))
    for _ in range(K - 1 - d):                             # 7: W, I down
        dev.weight()
        dev.run(dev.backward(down, split=True))
    for _ in range(d + 1):                                 # 8: the last W's
        dev.weight()
    if dev.weights:
        raise AssertionError(f"DualPipeV left {dev.weights} unscheduled on device {d}: "
                             "a bug in gpipe_core.schedules.dualpipe")
    return dev.order

"""Looped breadth-first pipelining (Lamy-Poirier 2022, arXiv:2211.05953) as a table.

Why it is in the zoo: it is the other way to spend virtual stages. Interleaved
1F1B visits a device's V stages depth-first (a few micro-batches through every
stage, early backwards, little memory); looped BFS goes breadth-first: all M
micro-batches through a device's first stage before any enters its next one,
and backwards the same way in reverse. That is GPipe's fill-drain run over
S = K*V stages in loop placement (stage s on device s mod K), and torch ships
it as ``ScheduleLoopedBFS``; tests/test_frontier.py holds our
per-device orders equal to torch's.

Device d's order: F(0..M-1) of stage d, then of stage d+K, ..., stage
d+(V-1)K; then B(M-1..0) of stage d+(V-1)K, ..., down to stage d.

Closed forms under unit costs (F = 1, B = 2 per stage, a stage being 1/V of
a device's share of the model), for M >= K (with fewer micro-batches a
device waits for its own next loop and the step is longer):

* step time 3VM + 3(K-1): each device works 3VM and idles 3(K-1), the
  fill and the drain crossing K-1 devices once each, so the bubble relative
  to the work is (K-1)/(VM), interleaved 1F1B's;
* peak activations held V*M stages on every device, GPipe's M micro-batches
  (all forwards come before any backward), against interleaved 1F1B's
  2(K-1-d) + (V-1)K + 1. Breadth-first pays in memory what it saves in
  hand-offs: a micro-batch crosses devices in V loops either way, but a
  device switches stages only 2V times.
"""

from __future__ import annotations

from .actions import Action, Cell
from .schedule import Schedule, check_sizes, loop_placement, ticks_from_orders


def looped_bfs_schedule(M: int, K: int, V: int = 2) -> Schedule:
    """Looped BFS: V stages per device in loop placement, each stage's M forwards before the next stage's."""
    check_sizes(M, K)
    check_sizes(M, V)
    orders: list[list[Cell]] = []
    for d in range(K):
        stages = [v * K + d for v in range(V)]
        order: list[Cell] = [Action("F", i, s) for s in stages for i in range(M)]
        order += [Action("B", i, s) for s in reversed(stages) for i in reversed(range(M))]
        orders.append(order)
    return ticks_from_orders(orders, loop_placement(K, V))

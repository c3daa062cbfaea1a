"""Honest solutions of assignments 03 and 04, three learners each, written from the notebooks' recipes.

Test data for the review (see :mod:`autograder.selftest.honest`): the tick-by-tick
learner, the comprehension-and-helpers learner, the recursion-and-data-classes
learner. Every source is one solution cell, keyed by grade id.
"""

from __future__ import annotations

SOURCES: dict[str, dict[str, dict[str, str]]] = {
    "03_scheduler": {
        "dana": {
            "fill_drain_schedule": '''\
def fill_drain_schedule(M: int, K: int) -> Schedule:
    if M < 1 or K < 1:
        raise ValueError(f"need at least one micro-batch and one stage, got M={M}, K={K}")
    half = M + K - 1
    table = []
    for t in range(2 * half):
        tick = []
        for stage in range(K):
            if t < half:
                mb = t - stage
                if 0 <= mb < M:
                    tick.append(Action("F", mb, stage))
            else:
                mb = M - 1 - (t - half - (K - 1 - stage))
                if 0 <= mb < M and t - half >= K - 1 - stage:
                    tick.append(Action("B", mb, stage))
        table.append(tick)
    return table
''',
            "idle_fraction": '''\
def idle_fraction(table: Schedule, K: int) -> float:
    busy = 0
    for tick in table:
        busy += len(tick)
    total = K * len(table)
    if total == 0:
        return 0.0
    return (total - busy) / total
''',
            "one_f_one_b": '''\
def one_f_one_b(M: int, K: int) -> Schedule:
    if M < 1 or K < 1:
        raise ValueError(f"M={M} and K={K} must both be at least 1")
    plans = []
    for stage in range(K):
        warm = min(K - 1 - stage, M)
        plan = []
        for mb in range(warm):
            plan.append(Action("F", mb, stage))
        next_f, next_b = warm, 0
        while next_f < M:
            plan.append(Action("F", next_f, stage))
            plan.append(Action("B", next_b, stage))
            next_f += 1
            next_b += 1
        while next_b < M:
            plan.append(Action("B", next_b, stage))
            next_b += 1
        plans.append(plan)
    finished = {}
    position = [0] * K
    table = []
    t = 0
    while len(finished) < 2 * M * K:
        tick = []
        for stage in range(K):
            if position[stage] == len(plans[stage]):
                continue
            action = plans[stage][position[stage]]
            if action.kind == "F":
                needed = [Action("F", action.microbatch, stage - 1)] if stage > 0 else []
            else:
                needed = [Action("F", action.microbatch, stage)]
                if stage < K - 1:
                    needed.append(Action("B", action.microbatch, stage + 1))
            if all(n in finished and finished[n] < t for n in needed):
                tick.append(action)
        for action in tick:
            finished[action] = t
            position[action.stage] += 1
        table.append(tick)
        t += 1
    return table
''',
        },
        "emil": {
            "fill_drain_schedule": '''\
def fill_drain_schedule(M: int, K: int) -> Schedule:
    if min(M, K) < 1:
        raise ValueError("fill_drain_schedule needs M >= 1 and K >= 1")
    length = 2 * (M + K - 1)
    at = {}
    for i in range(M):
        for j in range(K):
            at.setdefault(i + j, []).append(Action("F", i, j))
            at.setdefault(length - 1 - i - j, []).append(Action("B", i, j))
    return [sorted(at.get(t, []), key=lambda act: act.stage) for t in range(length)]
''',
            "idle_fraction": '''\
def idle_fraction(table: Schedule, K: int) -> float:
    slots = K * len(table)
    return 1 - sum(map(len, table)) / slots if slots else 0.0
''',
            "one_f_one_b": '''\
from functools import lru_cache


def _stage_order(M, K, j):
    w = min(K - 1 - j, M)
    steady = [a for i in range(w, M) for a in (Action("F", i, j), Action("B", i - w, j))]
    return [Action("F", i, j) for i in range(w)] + steady + [Action("B", i, j) for i in range(M - w, M)]


def one_f_one_b(M: int, K: int) -> Schedule:
    if min(M, K) < 1:
        raise ValueError("one_f_one_b needs M >= 1 and K >= 1")
    orders = [_stage_order(M, K, j) for j in range(K)]
    before = {a: (order[n - 1] if n else None) for order in orders for n, a in enumerate(order)}

    def inputs(a):
        if a.kind == "F":
            return [Action("F", a.microbatch, a.stage - 1)] if a.stage else []
        upstream = [Action("B", a.microbatch, a.stage + 1)] if a.stage + 1 < K else []
        return [Action("F", a.microbatch, a.stage)] + upstream

    @lru_cache(maxsize=None)
    def tick(a):
        previous = before[a]
        return max([tick(previous) + 1 if previous else 0] + [tick(d) + 1 for d in inputs(a)])

    times = {a: tick(a) for order in orders for a in order}
    grid = [[] for _ in range(max(times.values()) + 1)]
    for a in sorted(times, key=lambda a: a.stage):
        grid[times[a]].append(a)
    return grid
''',
        },
        "farah": {
            "fill_drain_schedule": '''\
def fill_drain_schedule(M: int, K: int) -> Schedule:
    """Stage-major grid first (row per stage, column per tick), then read it column by column."""
    if M <= 0 or K <= 0:
        raise ValueError(f"M and K must be positive (M={M}, K={K})")
    width = 2 * (M + K - 1)
    grid = [[None] * width for _ in range(K)]
    for stage in range(K):
        for mb in range(M):
            grid[stage][stage + mb] = Action("F", mb, stage)
            grid[stage][width - 1 - stage - mb] = Action("B", mb, stage)
    return [[grid[stage][col] for stage in range(K) if grid[stage][col] is not None] for col in range(width)]
''',
            "idle_fraction": '''\
def idle_fraction(table: Schedule, K: int) -> float:
    empty = sum(K - len(column) for column in table)
    return empty / (K * len(table)) if table and K else 0.0
''',
            "one_f_one_b": '''\
from collections import deque


def one_f_one_b(M: int, K: int) -> Schedule:
    if M <= 0 or K <= 0:
        raise ValueError(f"M and K must be positive (M={M}, K={K})")
    queues = []
    for s in range(K):
        q = deque()
        warmup = min(K - 1 - s, M)
        for m in range(warmup):
            q.append(("F", m))
        for k in range(M - warmup):
            q.append(("F", warmup + k))
            q.append(("B", k))
        for m in range(M - warmup, M):
            q.append(("B", m))
        queues.append(q)
    done_f = [[False] * K for _ in range(M)]
    done_b = [[False] * K for _ in range(M)]
    columns = []
    while any(queues):
        column = []
        for s, q in enumerate(queues):
            if not q:
                continue
            kind, m = q[0]
            if kind == "F":
                ready = s == 0 or done_f[m][s - 1]
            else:
                ready = done_f[m][s] and (s == K - 1 or done_b[m][s + 1])
            if ready:
                column.append(Action(kind, m, s))
        for action in column:
            queues[action.stage].popleft()
            table = done_f if action.kind == "F" else done_b
            table[action.microbatch][action.stage] = True
        columns.append(column)
    return columns
''',
        },
    },
    "04_recomputation": {
        "dana": {
            "recompute": '''\
class MyRecompute:
    """Keep the input and the random state; run the stage again in backward."""

    def forward(self, run: Callable[[Tensor], Tensor], x: Tensor, rng: RandomState) -> tuple[Tensor, Any]:
        random_state = rng.get_state()
        with torch.no_grad():
            result = run(x)
        return result, (x, random_state)

    def backward(self, run: Callable[[Tensor], Tensor], saved: Any, grad_output: Tensor | None,
                 rng: RandomState) -> Tensor | None:
        original, random_state = saved
        rng.set_state(random_state)
        leaf = original.detach()
        leaf.requires_grad_(original.requires_grad)
        with torch.enable_grad():
            result = run(leaf)
        torch.autograd.backward(result, grad_output)
        return leaf.grad
''',
        },
        "emil": {
            "recompute": '''\
class MyRecompute:
    """Re-materialisation with a dictionary of what backward needs."""

    def forward(self, run, x, rng):
        memo = {"input": x, "state": rng.get_state()}
        with torch.no_grad():
            return run(x), memo

    def backward(self, run, saved, grad_output, rng):
        rng.set_state(saved["state"])
        x = saved["input"].detach().requires_grad_(saved["input"].requires_grad)
        with torch.enable_grad():
            y = run(x)
        if grad_output is None:
            y.backward()
        else:
            y.backward(grad_output)
        return x.grad
''',
        },
        "farah": {
            "recompute": '''\
from dataclasses import dataclass


@dataclass
class Checkpoint:
    inp: Tensor
    generator_state: Any


class MyRecompute:
    def forward(self, run: Callable[[Tensor], Tensor], x: Tensor, rng: RandomState) -> tuple[Tensor, Any]:
        kept = Checkpoint(x, rng.get_state())
        with torch.no_grad():
            y = run(x)
        return y, kept

    def backward(self, run: Callable[[Tensor], Tensor], saved: Any, grad_output: Tensor | None,
                 rng: RandomState) -> Tensor | None:
        rng.set_state(saved.generator_state)
        wants_grad = saved.inp.requires_grad
        fresh = saved.inp.detach().requires_grad_(wants_grad)
        with torch.set_grad_enabled(True):
            y = run(fresh)
            torch.autograd.backward([y], None if grad_output is None else [grad_output])
        return fresh.grad if wants_grad else None
''',
        },
    },
}

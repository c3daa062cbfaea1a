"""Honest solutions of assignment 05's parts: partitioner, fill-drain table, policy, executor.

Test data for the review (see :mod:`autograder.selftest.honest`): a learner of
dictionaries and slices, one of helpers and comprehensions, one of brute force
and preallocated grids. Every source is one solution cell, keyed by grade id.
"""

from __future__ import annotations

SOURCES: dict[str, dict[str, dict[str, str]]] = {
    "05_assembling": {
        "gita": {
            "partition": '''\
def my_partition(costs: Sequence[float], K: int) -> list[int]:
    n = len(costs)
    if K < 1 or K > n:
        raise ValueError(f"K={K} must lie between 1 and the {n} layers")

    def segment(a, b):
        return sum(costs[a:b])

    worst = {(0, 0): 0.0}
    last_cut = {}
    for k in range(1, K + 1):
        for i in range(k, n + 1):
            for j in range(k - 1, i):
                if (k - 1, j) not in worst:
                    continue
                candidate = max(worst[(k - 1, j)], segment(j, i))
                if (k, i) not in worst or candidate < worst[(k, i)]:
                    worst[(k, i)] = candidate
                    last_cut[(k, i)] = j
    sizes = []
    i = n
    for k in range(K, 0, -1):
        j = last_cut[(k, i)]
        sizes.append(i - j)
        i = j
    sizes.reverse()
    return sizes
''',
            "schedule": '''\
def my_schedule(M: int, K: int) -> list[list[Action]]:
    ticks = 2 * (M + K - 1)
    out = []
    for t in range(ticks):
        row = []
        for j in range(K):
            i = t - j
            if 0 <= i < M:
                row.append(Action("F", i, j))
            back = ticks - 1 - t - j
            if 0 <= back < M:
                row.append(Action("B", back, j))
        out.append(row)
    return out
''',
            "recompute": '''\
class MyRecompute:
    def forward(self, run: Callable[[Tensor], Tensor], x: Tensor, rng: RandomState) -> tuple[Tensor, Any]:
        snapshot = rng.get_state()
        with torch.no_grad():
            activation = run(x)
        return activation, (x, snapshot)

    def backward(self, run: Callable[[Tensor], Tensor], saved: Any, grad_output: Tensor | None,
                 rng: RandomState) -> Tensor | None:
        stage_input, snapshot = saved
        rng.set_state(snapshot)
        replay_input = stage_input.detach().requires_grad_(stage_input.requires_grad)
        with torch.enable_grad():
            activation = run(replay_input)
        activation.backward(grad_output)
        return replay_input.grad
''',
            "executor": '''\
def run_table(stages: Sequence[Stage], table: Sequence[Sequence[Action]], inputs: Sequence[Tensor]) -> list[Tensor]:
    last = len(stages) - 1
    forward_msgs = {}
    backward_msgs = {}
    losses = [None] * len(inputs)
    for tick in table:
        for act in tick:
            i, j = act.microbatch, act.stage
            if act.kind == "F":
                if j == 0:
                    incoming = inputs[i]
                else:
                    incoming = forward_msgs.pop((i, j - 1))
                result = stages[j].forward(i, incoming)
                if j == last:
                    losses[i] = result
                else:
                    forward_msgs[(i, j)] = result
            elif act.kind == "B":
                if j == last:
                    incoming = None
                else:
                    incoming = backward_msgs.pop((i, j + 1))
                backward_msgs[(i, j)] = stages[j].backward(i, incoming)
            else:
                raise ValueError(f"cannot run action kind {act.kind!r}")
    return losses
''',
        },
        "hugo": {
            "partition": '''\
def _fits(costs, limit, stages):
    used, load = 1, 0.0
    for c in costs:
        if load + c <= limit:
            load += c
        else:
            used, load = used + 1, c
    return used <= stages


def my_partition(costs: Sequence[float], K: int) -> list[int]:
    """Smallest feasible bottleneck among all stage sums, then a greedy split that keeps a layer per stage."""
    L = len(costs)
    if not 1 <= K <= L:
        raise ValueError(f"need 1 <= K <= {L}, got K={K}")
    sums = sorted({sum(costs[a:b]) for a in range(L) for b in range(a + 1, L + 1)})
    limit = next(s for s in sums if s >= max(costs) and _fits(costs, s, K))
    counts, load = [0], 0.0
    for idx, c in enumerate(costs):
        open_after = K - len(counts)
        if counts[-1] and open_after and (load + c > limit or L - idx == open_after):
            counts.append(0)
            load = 0.0
        counts[-1] += 1
        load += c
    return counts
''',
            "schedule": '''\
def my_schedule(M: int, K: int) -> list[list[Action]]:
    span = M + K - 1
    slots = {}
    for mb in range(M):
        for st in range(K):
            slots[(mb + st, st)] = Action("F", mb, st)
            slots[(2 * span - 1 - mb - st, st)] = Action("B", mb, st)
    return [[slots[(t, st)] for st in range(K) if (t, st) in slots] for t in range(2 * span)]
''',
            "recompute": '''\
class MyRecompute:
    def forward(self, run, x, rng):
        bundle = (x, rng.get_state())
        with torch.no_grad():
            return run(x), bundle

    def backward(self, run, saved, grad_output, rng):
        x, state = saved
        rng.set_state(state)
        leaf = x.detach().requires_grad_(x.requires_grad)
        with torch.enable_grad():
            torch.autograd.backward(run(leaf), grad_output)
        return leaf.grad
''',
            "executor": '''\
def _feed(stage_index, microbatch, inputs, downstream):
    return inputs[microbatch] if stage_index == 0 else downstream[stage_index - 1].pop(microbatch)


def run_table(stages: Sequence[Stage], table: Sequence[Sequence[Action]], inputs: Sequence[Tensor]) -> list[Tensor]:
    K = len(stages)
    downstream = [dict() for _ in range(K)]
    upstream = [dict() for _ in range(K)]
    losses = {}
    for actions in table:
        for a in actions:
            if a.kind == "F":
                out = stages[a.stage].forward(a.microbatch, _feed(a.stage, a.microbatch, inputs, downstream))
                (losses if a.stage == K - 1 else downstream[a.stage])[a.microbatch] = out
            else:
                grad = upstream[a.stage + 1].pop(a.microbatch) if a.stage < K - 1 else None
                upstream[a.stage][a.microbatch] = stages[a.stage].backward(a.microbatch, grad)
    return [losses[m] for m in sorted(losses)]
''',
        },
        "ines": {
            "partition": '''\
from itertools import combinations


def my_partition(costs: Sequence[float], K: int) -> list[int]:
    """Every way to place K - 1 cuts (the tests' models are small), the one whose slowest stage is cheapest."""
    layers = len(costs)
    if K < 1 or K > layers:
        raise ValueError(f"{layers} layers cannot make {K} stages")
    best_sizes, best_cost = None, None
    for cuts in combinations(range(1, layers), K - 1):
        edges = (0,) + cuts + (layers,)
        sizes = [edges[s + 1] - edges[s] for s in range(K)]
        slowest = max(sum(costs[edges[s]:edges[s + 1]]) for s in range(K))
        if best_cost is None or slowest < best_cost:
            best_sizes, best_cost = sizes, slowest
    return best_sizes
''',
            "schedule": '''\
def my_schedule(M: int, K: int) -> list[list[Action]]:
    fill = [[Action("F", t - s, s) for s in range(K) if 0 <= t - s < M] for t in range(M + K - 1)]
    drain = [[Action("B", a.microbatch, a.stage) for a in tick] for tick in reversed(fill)]
    return fill + drain
''',
            "recompute": '''\
class MyRecompute:
    """The policy of assignment 4, written again."""

    def forward(self, run: Callable[[Tensor], Tensor], x: Tensor, rng: RandomState) -> tuple[Tensor, Any]:
        state_before = rng.get_state()
        with torch.no_grad():
            y = run(x)
        return y, [x, state_before]

    def backward(self, run: Callable[[Tensor], Tensor], saved: Any, grad_output: Tensor | None,
                 rng: RandomState) -> Tensor | None:
        rng.set_state(saved[1])
        x = saved[0].detach()
        if saved[0].requires_grad:
            x.requires_grad_()
        with torch.set_grad_enabled(True):
            y = run(x)
        if grad_output is None:
            y.backward()
        else:
            y.backward(gradient=grad_output)
        return x.grad
''',
            "executor": '''\
def run_table(stages: Sequence[Stage], table: Sequence[Sequence[Action]], inputs: Sequence[Tensor]) -> list[Tensor]:
    M, K = len(inputs), len(stages)
    sent_forward = [[None] * K for _ in range(M)]
    sent_backward = [[None] * K for _ in range(M)]
    for t in range(len(table)):
        for action in table[t]:
            m, s = action.microbatch, action.stage
            if action.kind == "F":
                given = inputs[m] if s == 0 else sent_forward[m][s - 1]
                sent_forward[m][s] = stages[s].forward(m, given)
            elif action.kind == "B":
                given = None if s == K - 1 else sent_backward[m][s + 1]
                sent_backward[m][s] = stages[s].backward(m, given)
    return [sent_forward[m][K - 1] for m in range(M)]
''',
        },
    },
}

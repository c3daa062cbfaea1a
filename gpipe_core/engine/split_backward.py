"""The backward pass cut in two: I (gradient of the stage input) now, W (weight gradients) later.

Zero-bubble schedules (Qi et al. 2024) run the part of a stage's backward
that the previous stage waits for, I, as early as possible, and defer the
part nobody waits for, W, into what would otherwise be a bubble. Autograd
computes both in one pass, so the cut needs care to cost nothing extra:

* I asks autograd only for the input's gradient (``torch.autograd.grad`` with
  ``inputs=``): nodes then skip the outputs nobody asked for, e.g. a Linear's
  weight-gradient matmul. On the way, a pre-hook records the gradient that
  arrives at every node where a weight's branch joins the input's path.
* W starts autograd again from those recorded gradients, one group of
  parameters at a time, asking only for the parameters: each node now skips
  its input-gradient matmul. I + W does the work of one B, not two.

Where a group has several such nodes and one lies upstream of another, the
recorded gradients are pinned with pre-hooks so nothing is counted twice.
Parameters whose branch never meets the input's path (stage 0, whose input
needs no gradient, or a branch fed by constants only) get theirs from an
ordinary backward restricted to them. Needs ``torch.autograd.graph.GradientEdge``.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from . import tensors


def _edge_api() -> Any:
    graph = torch.autograd.graph
    if not hasattr(graph, "GradientEdge") or not hasattr(graph, "get_gradient_edge"):
        raise RuntimeError(f"split backward (I and W actions) needs torch.autograd.graph.GradientEdge, which torch "
                           f"{torch.__version__} lacks: upgrade torch, or use a schedule with whole B actions")
    return graph


class WeightWork:
    """What W needs from I: the recorded gradients, grouped by the parameters they lead to."""

    def __init__(self, groups: list[tuple[list[Any], list[tuple[Any, tuple[Tensor | None, ...]]]]],
                 rest: list[Tensor], pairs: list[tuple[Tensor, Tensor | None]]) -> None:
        self.groups, self.rest, self.pairs = groups, rest, pairs

    def run(self) -> None:
        """Accumulate every parameter's gradient into ``.grad``."""
        graph = _edge_api()
        for params, recorded in self.groups:
            edges = [(graph.GradientEdge(node, k), g) for node, grads in recorded for k, g in enumerate(grads)
                     if g is not None]
            if not edges:
                continue
            pins = [node.register_prehook(lambda _, grads=grads: grads) for node, grads in recorded] \
                if len(recorded) > 1 else []
            try:
                found = torch.autograd.grad([e for e, _ in edges], [graph.get_gradient_edge(p) for p in params],
                                            grad_outputs=[g for _, g in edges], retain_graph=True,
                                            allow_unused=True)
            finally:
                for pin in pins:
                    pin.remove()
            for p, g in zip(params, found):
                if g is not None:
                    if p.grad is None:
                        p.grad = g
                    else:
                        p.grad.add_(g)  # in place, as autograd accumulates a B's gradient
        if self.rest and self.pairs:
            torch.autograd.backward([o for o, _ in self.pairs], [g for _, g in self.pairs], inputs=self.rest)
        self.groups, self.rest, self.pairs = [], [], []


def backward_input(out: Any, grad: Any, x: Any, params: Iterable[Tensor]) -> tuple[Any, WeightWork]:
    """I: the gradient of the float leaves of ``x``; returns it and the work W will do."""
    graph = _edge_api()
    pairs = tensors.grad_pairs(out, grad)
    params = [p for p in params if p.requires_grad]
    inputs = [t for t in tensors.as_tuple(x) if isinstance(t, Tensor) and t.requires_grad]
    if not pairs or not inputs:
        return tensors.grads_of(x), WeightWork([], params, pairs)
    consumers = _consumers([o.grad_fn for o, _ in pairs if o.grad_fn is not None])
    on_path = _upward({graph.get_gradient_edge(t).node for t in inputs}, consumers)
    joins_of = {p: _upward({graph.get_gradient_edge(p).node}, consumers, stop=on_path) & on_path for p in params}
    recorded: dict[Any, tuple[Tensor | None, ...]] = {}
    hooks = [node.register_prehook(lambda grads, node=node: recorded.__setitem__(node, grads))
             for node in set().union(*joins_of.values())]
    try:
        found = torch.autograd.grad([o for o, _ in pairs], inputs, grad_outputs=[g for _, g in pairs],
                                    retain_graph=True, allow_unused=True)
    finally:
        for h in hooks:
            h.remove()
    for t, g in zip(inputs, found):
        t.grad = g
    groups = _group(joins_of)
    rest = [p for p, joins in joins_of.items() if not joins]
    work = WeightWork([(ps, [(n, recorded[n]) for n in nodes if n in recorded]) for ps, nodes in groups], rest, pairs)
    return tensors.grads_of(x), work


def _consumers(roots: list[Any]) -> dict[Any, list[Any]]:
    """For every node reachable from ``roots``, the nodes that feed it a gradient (its consumers)."""
    consumers: dict[Any, list[Any]] = defaultdict(list)
    queue, seen = deque(roots), set(roots)
    while queue:
        node = queue.popleft()
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            consumers[nxt].append(node)
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return consumers


def _upward(start: set[Any], consumers: dict[Any, list[Any]], stop: set[Any] | None = None) -> set[Any]:
    """Nodes reached from ``start`` towards the outputs; with ``stop``, nodes in it end the walk (and are kept)."""
    found, queue = set(start), deque(start)
    while queue:
        node = queue.popleft()
        if stop is not None and node in stop:
            continue
        for up in consumers.get(node, ()):
            if up not in found:
                found.add(up)
                queue.append(up)
    return found


def _group(joins_of: dict[Tensor, set[Any]]) -> list[tuple[list[Tensor], set[Any]]]:
    """Parameters that share a join node are differentiated together (one autograd call per group)."""
    groups: list[tuple[list[Tensor], set[Any]]] = []
    for p, joins in joins_of.items():
        if not joins:
            continue
        merged = [g for g in groups if g[1] & joins]
        params, nodes = [p], set(joins)
        for g in merged:
            params += g[0]
            nodes |= g[1]
            groups.remove(g)
        groups.append((params, nodes))
    return groups

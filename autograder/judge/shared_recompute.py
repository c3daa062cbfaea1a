"""MyRecompute checked alone on one stage: graded in 04, and again in 05 and 08 wherever the policy is the cause.

One place for the cases (the notebook's visible ones, then drawn stages with
dropout), the comparison with ``StoreActivations`` on the same stage and the
hint that names which RNG the policy restored, so every assignment that grades
a learner's recomputation policy grades it the same way.
"""

from __future__ import annotations

import random
import re
from typing import Any

import torch

from autograder.judge.base import Failed, close, expect, same_grads
from autograder.judge.probe_harness import build, run_isolated
from gpipe_core.engine.checkpoint import StoreActivations

GLOBAL_RNG = re.compile(r"torch\.(random\.)?(set_rng_state|get_rng_state|manual_seed|fork_rng|seed)\b")


def _layers(kind: str, seed: int) -> tuple[dict, int]:
    if kind == "visible":
        return {"seed": seed, "layers": [["Linear", 8, 8], ["Dropout", 0.5], ["Tanh"], ["Linear", 8, 8],
                                         ["Dropout", 0.5]]}, 8
    if kind == "residual":
        return {"seed": seed, "factory": ["residual_mlp", [4, 12, 12], {"dropout": 0.3}]}, 12
    if kind == "alpha":
        return {"seed": seed, "layers": [["Linear", 10, 14], ["SELU"], ["AlphaDropout", 0.4], ["Linear", 14, 10],
                                         ["Dropout", 0.2]]}, 10
    return {"seed": seed, "layers": [["Linear", 9, 9], ["GELU"], ["Dropout", 0.6], ["LayerNorm", 9],
                                     ["Linear", 9, 9], ["Dropout", 0.3]]}, 9


def rng_hint(got: dict, source: str) -> str:
    """Why gradients with dropout differ, from what the policy did with the stage's rng."""
    if got.get("rng_sets_backward", 1) == 0:
        if got.get("global_rng") or GLOBAL_RNG.search(source):
            return ("you restore torch's global RNG, but the stage's dropout draws from the rng handed to the "
                    "policy: call rng.set_state(...) with the state rng.get_state() returned before the forward")
        return ("backward never calls rng.set_state(...): restore the stage's rng to the state rng.get_state() "
                "returned before the forward, so the recomputation draws the same dropout masks")
    if got.get("rng_gets", 1) == 0:
        return "forward never calls rng.get_state(): record the stage's rng state before running the stage"
    if got.get("rng_recorded_late"):
        return ("forward records the rng state after running the stage: call rng.get_state() before run(x), so "
                "backward restores the state the forward's dropout masks were drawn from")
    return ("restore the state recorded before this micro-batch's forward (keep it in `saved`, not on the "
            "policy object), recompute under torch.enable_grad() and back-propagate grad_output")


def isolated_cases(rng: random.Random) -> list[tuple[str, dict, torch.Tensor, torch.Tensor | None, int, bool]]:
    """(where, model spec, x, grad_output, seed, scalar loss): the visible cases, then drawn ones."""
    spec, width = _layers("visible", 0)
    g0 = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, width, generator=g0).requires_grad_()
    out = [("one stage with dropout", spec, x0, torch.randn(6, width, generator=g0), 3, False),
           ("the last stage (scalar loss, grad_output=None)", spec, x0, None, 4, True)]
    for kind, as_loss in [("residual", False), ("alpha", False), ("gelu", False), ("gelu", True),
                          ("residual", True)]:
        seed = rng.randrange(10_000)
        spec, width = _layers(kind, seed)
        gen = torch.Generator().manual_seed(seed)
        n = rng.randint(3, 11)
        x = torch.randn(n, width, generator=gen).requires_grad_()
        g = None if as_loss else torch.randn(n, width, generator=gen)
        out.append((f"a {kind} stage{' ending in a scalar loss' if as_loss else ''}", spec, x, g, seed + 1, as_loss))
    spec, width = _layers("gelu", rng.randrange(10_000))
    out.append(("the first stage (its input needs no gradient)", spec, torch.randn(4, width), torch.randn(4, width),
                9, False))
    return out


def check_isolated(where: str, got: dict, spec: dict, x: torch.Tensor, g: Any, seed: int, as_loss: bool,
                   source: str) -> None:
    ref = build(spec)
    want = run_isolated(StoreActivations(), ref, x.detach().clone().requires_grad_(x.requires_grad), seed, g,
                        as_loss)
    close(got["out"], want["out"], f"{where}: the forward output (it should just be run(x), without a graph)")
    if x.requires_grad:
        expect(got["grad"] is not None, f"{where}: backward returned None for an input that requires grad: make the "
                                        "fresh leaf require grad when the saved input did, and return its .grad")
    try:
        if x.requires_grad:
            close(got["grad"], want["grad"], f"{where}: the input gradient")
        names = [n for n, _ in ref.named_parameters()]
        same_grads(got["grads"], want["grads"], names, where)
    except Failed as exc:
        raise Failed(f"{exc}: {rng_hint(got, source)}") from None


def ask_isolated(ask: Any, cases: list[tuple[str, dict, torch.Tensor, torch.Tensor | None, int, bool]]) -> Any:
    """Queue the learner's policy alone on each case; the ``verify()`` that compares each reply with ours."""
    replies = [ask.task("recompute_isolated", what=f"MyRecompute on {where}", model=spec, x=x, grad_output=g,
                        seed=seed, loss=as_loss) for where, spec, x, g, seed, as_loss in cases]

    def verify() -> None:
        for (where, spec, x, g, seed, as_loss), reply in zip(cases, replies):
            check_isolated(where, reply.value(), spec, x, g, seed, as_loss, ask.source)

    return verify

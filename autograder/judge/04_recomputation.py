"""Judge of assignment 04: the MyRecompute policy, alone, inside the engine, and what it keeps.

The policy runs in the probe (the only place learner code runs); the judge
computes the same stage with ``StoreActivations`` and the same pipeline with
``sequential_step`` and compares outputs, input gradients and every parameter
gradient, dropout included. The process is checked as well as the result:
what autograd still holds after ``forward``, what ``saved`` keeps, and the
bytes each stage holds in a real run against the re-materialised law. When
gradients differ, the message says which RNG the policy restored.
"""

from __future__ import annotations

import random
import re
from typing import Any

import torch
from torch import nn

from autograder.judge.base import Checks, Failed, close, expect, same_grads
from autograder.judge.probe_harness import build, loss_function, run_isolated
from gpipe_core import GPipe, sequential_step
from gpipe_core.course.report import memory_law_bytes
from gpipe_core.engine.checkpoint import StoreActivations

CHECKS = Checks()
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


@CHECKS("test_recompute_isolated")
def isolated(ask, rng: random.Random):
    cases = isolated_cases(rng)
    replies = [ask.task("recompute_isolated", what=f"MyRecompute on {where}", model=spec, x=x, grad_output=g,
                        seed=seed, loss=as_loss) for where, spec, x, g, seed, as_loss in cases]

    def verify() -> None:
        for (where, spec, x, g, seed, as_loss), reply in zip(cases, replies):
            check_isolated(where, reply.value(), spec, x, g, seed, as_loss, ask.source)

    return verify


def _balance(rng: random.Random, L: int, K: int) -> list[int]:
    cuts = sorted(rng.sample(range(1, L), K - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, L])]


@CHECKS("test_recompute_gpipe")
def in_gpipe(ask, rng: random.Random):
    gen = torch.Generator().manual_seed(2)
    cases = [({"seed": 1, "factory": ["mlp", [5, 16], {"classes": 4, "dropout": 0.3}]}, [3, 3], 3,
              torch.randn(10, 16, generator=gen), torch.randint(0, 4, (10,), generator=gen), 11, "gpipe")]
    for kind, schedule in [("residual", "gpipe"), ("mlp", "gpipe"), ("mlp", "1f1b"), ("residual", "1f1b")]:
        seed = rng.randrange(10_000)
        spec = ({"seed": seed, "factory": ["residual_mlp", [6, 20, 5], {"dropout": 0.25}]} if kind == "residual"
                else {"seed": seed, "factory": ["mlp", [5, 20], {"classes": 5, "dropout": 0.5}]})
        L = 6
        K = rng.randint(2, 4)
        n = rng.randint(9, 16)
        g = torch.Generator().manual_seed(seed)
        cases.append((spec, _balance(rng, L, K), rng.randint(2, min(8, n)), torch.randn(n, 20, generator=g),
                      torch.randint(0, 5, (n,), generator=g), seed, schedule))
    replies = [ask.task("recompute_gpipe", what=f"GPipe(balance={b}, chunks={M}, schedule={s!r}, "
                        "checkpoint=MyRecompute())", model=spec, balance=b, M=M, x=x, y=y, seed=seed, schedule=s)
               for spec, b, M, x, y, seed, s in cases]

    def verify() -> None:
        for (spec, balance, M, x, y, seed, schedule), reply in zip(cases, replies):
            where = f"GPipe(balance={balance}, chunks={M}, schedule={schedule!r}) with dropout"
            got = reply.value(where)
            ref = build(spec)
            want = sequential_step(ref, x, y, nn.functional.cross_entropy, balance=balance, chunks=M, seed=seed)
            try:
                close(got["loss"], want, f"{where}: the loss (against the sequential model's)", rtol=1e-5, atol=0)
                same_grads(got["grads"], [p.grad for p in ref.parameters()],
                           [n for n, _ in ref.named_parameters()], where)
            except Failed as exc:
                raise Failed(f"{exc}: {rng_hint({}, ask.source)}") from None

    return verify


@CHECKS("test_recompute_memory")
def memory(ask, rng: random.Random):
    saved_cases = [({"seed": 0, "layers": [["Linear", 16, 16], ["ReLU"], ["Dropout", 0.2], ["Linear", 16, 16]]},
                    torch.randn(8, 16, generator=torch.Generator().manual_seed(0)).requires_grad_()),
                   ({"seed": rng.randrange(1000), "factory": ["residual_mlp", [5, 24, 24], {"dropout": 0.3}]},
                    torch.randn(13, 24, generator=torch.Generator().manual_seed(rng.randrange(1000))).requires_grad_())]
    saved = [ask.task("recompute_saved", what="MyRecompute.forward", model=s, x=x) for s, x in saved_cases]
    laws = [(64, 32, 8, 2, 4)] + rng.sample([(96, 24, 9, 3, 8), (64, 16, 12, 4, 16), (48, 40, 6, 2, 6)], 2)
    data = []
    for N, H, *_ in laws:
        g = torch.Generator().manual_seed(rng.randrange(1000))
        data.append((torch.randn(N, H, generator=g), torch.randn(N, H, generator=g)))
    runs = [ask.task("recompute_memory", what=f"GPipe(mlp({L}, {H}), K={K}, M={M}, checkpoint=MyRecompute())",
                     model={"seed": 0, "factory": ["mlp", [L, H], {}]}, K=K, M=M, x=x, y=y)
            for (N, H, L, K, M), (x, y) in zip(laws, data)]

    def verify() -> None:
        for (_, x), reply in zip(saved_cases, saved):
            got = reply.value("MyRecompute.forward on one stage")
            expect(got["held_by_autograd"] == 0, f"after your forward autograd still holds {got['held_by_autograd']:,}"
                   " bytes of activations: run the stage under torch.no_grad() and keep no graph")
            expect(not got["out_graph"], "the forward output carries a graph: compute it under torch.no_grad()")
            expect(all(not graph for _, graph in got["saved"]),
                   "saved holds a tensor with a graph: keep the input (detached), not outputs")
            limit = x.numel() * x.element_size() + got["rng_bytes"]
            total = sum(b for b, _ in got["saved"])
            expect(total <= limit, f"saved holds {total:,} bytes of tensors, more than the input and the RNG state "
                                   f"({limit:,} bytes): keep only those two")
        for (N, H, L, K, M), (x, y), reply in zip(laws, data, runs):
            got = reply.value(f"GPipe with MyRecompute, N={N}, L={L}, K={K}, M={M}")["memory"]
            spec = {"seed": 0, "factory": ["mlp", [L, H], {}]}
            stored = GPipe(build(spec), partitions=K, chunks=M, checkpoint="never", devices="cpu")
            stored.step(x, y, loss_function("energy"), measure_memory=True)
            law = memory_law_bytes(GPipe(build(spec), partitions=K, chunks=M, checkpoint="always", devices="cpu"), x)
            expect(type(got) is list and len(got) == K, f"N={N}, K={K}: expected one measurement per stage")
            for j, (mine, want, full) in enumerate(zip(got, law, stored.memory)):
                expect(abs(mine - want) <= 0.05 * want,
                       f"N={N}, L={L}, K={K}, M={M}: stage {j} held {mine:,} bytes of activations, but the "
                       f"re-materialised law predicts {want:,.0f} (storing everything holds {full:,}): keep only "
                       "the input in forward")
                expect(mine < 0.6 * full, f"stage {j} saves too little memory ({mine:,} vs {full:,} bytes when "
                                          "storing all)")

    return verify

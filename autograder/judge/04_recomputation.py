"""Judge of assignment 04: the MyRecompute policy, alone, inside the engine, and what it keeps.

The policy runs in the probe (the only place learner code runs); the judge
computes the same stage with ``StoreActivations`` and the same pipeline with
``sequential_step`` and compares outputs, input gradients and every parameter
gradient, dropout included. The process is checked as well as the result:
what autograd still holds after ``forward``, what ``saved`` keeps, and the
bytes each stage holds in a real run against the re-materialised law. When
gradients differ, the message says which RNG the policy restored. The policy
alone on one stage is checked by :mod:`.shared_recompute` (05 and 08 use it too).
"""

from __future__ import annotations

import random

import torch
from torch import nn

from autograder.judge.base import Checks, Failed, close, expect, same_grads
from autograder.judge.probe_harness import build, loss_function
from autograder.judge.shared_recompute import ask_isolated, isolated_cases, rng_hint
from autograder.judge.view import POLICIES
from autograder.sandbox.limits import Limits
from gpipe_core import GPipe, sequential_step
from gpipe_core.course.report import memory_law_bytes

CHECKS = Checks()
EXERCISES = {"MyRecompute": POLICIES}  # what would solve it: the grading view has no body for it (view.py)
LIMITS = Limits(cell_timeout_s=60, notebook_timeout_s=300)  # the slowest graded cell on 2 cores, times ~10


@CHECKS("test_recompute_isolated")
def isolated(ask, rng: random.Random):
    return ask_isolated(ask, isolated_cases(rng))


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

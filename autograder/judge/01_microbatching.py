"""Judge of assignment 01: split_batch, microbatch_weights, accumulate_gradients.

The notebook's visible cases are checked again here (the kernel's own verdict
counts for nothing), then cases of the same kinds drawn per grading run:
uneven splits, M = 1 and M = N, extra dimensions, micro-batches of very
different sizes, two losses. How the gradients were reached is checked too:
the model must see each micro-batch on its own, never the whole batch.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from autograder.judge.base import Checks, Failed, as_tensor, close, expect, number, same_grads
from autograder.judge.probe_harness import build, loss_function
from autograder.judge.view import SPLIT, WEIGHTS, Family
from autograder.sandbox.limits import Limits

CHECKS = Checks()
EXERCISES = {  # what would solve each exercise: the grading view has no body for it (autograder/judge/view.py)
    "split_batch": SPLIT, "microbatch_weights": WEIGHTS,
    "accumulate_gradients": Family(("engine.reference.sequential_step",))}
LIMITS = Limits(cell_timeout_s=60, notebook_timeout_s=300)  # the slowest graded cell on 2 cores, times ~10


def _randn(rng: random.Random, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(rng.randrange(2**31)))


@CHECKS("test_split")
def split(ask, rng: random.Random):
    cases = [torch.arange(20.0).reshape(10, 2), torch.zeros(6, 3)]
    Ms = [4, 4]
    for _ in range(7):
        n = rng.randint(1, 40)
        cases.append(_randn(rng, n, *rng.choice([(), (3,), (2, 3)])))
        Ms.append(rng.choice([1, n, rng.randint(1, n)]))
    replies = [ask.call("split_batch", x, M) for x, M in zip(cases, Ms)]
    bad = [(4, 5), (4, 0)] + [(n, rng.choice([n + 1, n + 3, 0, -1])) for n in rng.sample(range(1, 12), 3)]
    bad_replies = [ask.call("split_batch", torch.zeros(n, 2), M) for n, M in bad]

    def verify() -> None:
        for x, M, reply in zip(cases, Ms, replies):
            n = x.shape[0]
            parts = reply.value(f"split_batch({n} samples, M={M})")
            expect(type(parts) in (list, tuple), f"split_batch must return a list of tensors, got {parts!r:.80}")
            expect(len(parts) == M, f"{n} samples with M={M} must give exactly {M} micro-batches, got {len(parts)}"
                   + (": torch.chunk may return fewer than M, so compute the sizes yourself" if len(parts) < M else ""))
            parts = [as_tensor(p, f"{n} samples, M={M}: micro-batch {i}") for i, p in enumerate(parts)]
            sizes = [p.shape[0] if p.dim() else 0 for p in parts]
            expect(min(sizes) >= 1 and max(sizes) - min(sizes) <= 1,
                   f"{n} samples, M={M}: sizes {sizes} must be non-empty and differ by at most one")
            expect(all(p.shape[1:] == x.shape[1:] for p in parts),
                   f"a batch of shape {tuple(x.shape)} must be split along dimension 0 only")
            expect(torch.equal(torch.cat(parts), x), f"{n} samples, M={M}: the micro-batches in order must give "
                   "back the batch (no sample lost, moved or copied)")
        missed = [(n, M) for (n, M), r in zip(bad, bad_replies) if not r.raised("ValueError")]
        expect(not missed, f"split_batch must raise ValueError for these (samples, M): {missed}")

    return verify


@CHECKS("test_weights")
def weights(ask, rng: random.Random):
    cases = [[3, 3, 2, 2]] + [[rng.randint(1, 9) for _ in range(rng.randint(1, 7))] for _ in range(5)]
    replies = [ask.call("microbatch_weights", [torch.zeros(n, 2) for n in sizes]) for sizes in cases]

    def verify() -> None:
        for sizes, reply in zip(cases, replies):
            got = reply.value(f"microbatch_weights(micro-batches of sizes {sizes})")
            want = [n / sum(sizes) for n in sizes]
            expect(type(got) in (list, tuple) and len(got) == len(sizes),
                   f"sizes {sizes}: expected one weight per micro-batch, got {got!r:.80}")
            values = [number(w, f"sizes {sizes}: weight") for w in got]
            expect(all(abs(a - b) < 1e-12 for a, b in zip(values, want)),
                   f"sizes {sizes}: micro-batch i weighs n_i/N = {[round(v, 4) for v in want]}, got {values}")

    return verify


def _tiny() -> dict:
    return {"layers": [["Linear", 6, 16], ["Tanh"], ["Linear", 16, 4]]}


def _cuts(rng: random.Random, n: int, m: int) -> list[int]:
    return sorted(rng.sample(range(1, n), m - 1))


@CHECKS("test_accumulate")
def accumulate(ask, rng: random.Random):
    g = torch.Generator().manual_seed(3)
    cases = [({**_tiny(), "seed": 0}, torch.randn(10, 6, generator=g), torch.randint(0, 4, (10,), generator=g),
              "cross_entropy", [5, 6], True)]
    n = rng.randint(12, 24)
    x, y = _randn(rng, n, 9), torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(rng.randrange(99)))
    mlp = {"layers": [["Linear", 9, 20], ["ReLU"], ["Linear", 20, 20], ["ReLU"], ["Linear", 20, 5]]}
    small = {"layers": [["Linear", 9, 7], ["Sigmoid"], ["Linear", 7, 5]]}
    cases += [({**mlp, "seed": rng.randrange(1000)}, x, y, "cross_entropy", _cuts(rng, n, 4), False),
              ({**small, "seed": rng.randrange(1000)}, x, y, "cross_entropy", list(range(1, n)), False),  # M = N
              ({**small, "seed": rng.randrange(1000)}, x, y, "cross_entropy", [], False)]  # M = 1
    m = rng.randint(15, 30)
    xq, yq = _randn(rng, m, 4, 5), _randn(rng, m, 2)
    seq = {"layers": [["Linear", 5, 8], ["GELU"], ["Flatten"], ["Linear", 32, 2]]}
    cases += [({**seq, "seed": rng.randrange(1000)}, xq, yq, "mse_loss", _cuts(rng, m, 6), False),
              ({**seq, "seed": rng.randrange(1000)}, xq, yq, "mse_loss", [1], False)]  # 1 and m-1 samples
    replies = [ask.task("accumulate", model=spec, x=xi, y=yi, loss=loss, cuts=cuts, repeat=repeat)
               for spec, xi, yi, loss, cuts, repeat in cases]

    def verify() -> None:
        for (spec, xi, yi, loss, cuts, repeat), reply in zip(cases, replies):
            sizes = [len(c) for c in torch.tensor_split(xi, cuts)]
            where = f"micro-batch sizes {sizes} ({loss})"
            got = reply.value(f"accumulate_gradients with {where}")
            ref = build(spec)
            want_loss = loss_function(loss)(ref(xi), yi)
            want_loss.backward()
            names = [name for name, _ in ref.named_parameters()]
            want = [p.grad.clone() for p in ref.parameters()]
            expect(got["forward_sizes"] == sizes,
                   f"{where}: the model was called on batches of {got['forward_sizes']} samples; run it on each "
                   f"micro-batch in turn ({sizes}), never on the whole batch")
            M = len(sizes)
            expect(got.get("order", ["F", "B"] * M) == ["F", "B"] * M,
                   f"{where}: your calls ran {''.join(got.get('order', []))} (F a forward, B its backward): backward "
                   "each micro-batch's loss before the next forward, so only one micro-batch's activations are alive "
                   "at a time")
            try:
                same_grads(got["grads"], want, names, where)
            except Failed as exc:
                raise Failed(f"{exc}: weight each micro-batch's mean loss by n_i/N and add up, without zeroing "
                             "or stepping in between") from None
            value = as_tensor(got["loss"], f"{where}: the returned loss")
            expect(value.numel() == 1, f"{where}: return the full-batch loss as a scalar tensor")
            close(value.detach().reshape(()).float(), want_loss.detach(), f"{where}: the returned loss "
                  "(it must equal the full-batch mean loss)", atol=1e-6)
            if repeat:
                same_grads(got["grads2"], [2 * w for w in want], names,
                           f"{where}, called twice (a second call must add the same gradient again: "
                           "do not zero or overwrite .grad)")

    return verify


_ = nn  # the models are built from specs (probe_harness.build)

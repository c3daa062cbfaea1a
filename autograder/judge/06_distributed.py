"""Judge of assignment 06: micro_batch_loss under torch.distributed.pipelining's ScheduleGPipe.

The probe runs torch's own schedule (one rank, ``scale_grads=False``) with the
learner's weighted loss; the judge compares the gradients left after one or
several steps with plain full-batch backwards, on even and uneven
micro-batches and two losses. The grading view has no body for the engine's
own weighting (``microbatch.weights``, ``DistributedPipe._weighted``).
"""

from __future__ import annotations

import random

import torch

from autograder.judge.base import Checks, as_tensor, expect
from autograder.judge.probe_harness import build, loss_function
from autograder.judge.view import WEIGHTS
from autograder.sandbox.limits import Limits

CHECKS = Checks()
EXERCISES = {"micro_batch_loss": WEIGHTS.plus("engine.reference.sequential_step")}  # no body in the view (view.py)
LIMITS = Limits(cell_timeout_s=120, notebook_timeout_s=400)  # the slowest graded cell on 2 cores, times ~10


def _relative_error(got: list, want: list) -> float:
    return max(((as_tensor(a, "a gradient") - b).norm() / b.norm()).item() for a, b in zip(got, want))


@CHECKS("test_micro_batch_loss")
def micro_batch_loss(ask, rng: random.Random):
    # even and uneven micro-batches as the visible test has them (10 = 3 + 3 + 2 + 2), then drawn ones: the
    # drawn sizes may all divide evenly, and 1/M recovered from sizes is right on even splits
    cases = [(8, 4, 1, "cross_entropy", 3), (8, 4, 2, "cross_entropy", 3), (10, 4, 1, "cross_entropy", 3)]
    for _ in range(4):
        N = rng.randint(5, 14)
        cases.append((N, rng.randint(2, N), rng.randint(1, 3), rng.choice(["cross_entropy", "mse_loss"]), 4))
    data = []
    for N, _, _, loss, classes in cases:
        g = torch.Generator().manual_seed(rng.randrange(2**31))
        x = torch.randn(N, 6, generator=g)
        y = torch.randint(0, classes, (N,), generator=g) if loss == "cross_entropy" else torch.randn(N, classes,
                                                                                                      generator=g)
        data.append((x, y))
    specs = [{"seed": rng.randrange(1000), "layers": [["Linear", 6, 8], ["Tanh"], ["Linear", 8, classes]]}
             for *_, classes in cases]
    replies = [ask.task("micro_batch_loss", what=f"ScheduleGPipe with micro_batch_loss, N={N}, M={M}", model=spec,
                        x=x, y=y, loss=loss, M=M, steps=steps)
               for (N, M, steps, loss, _), (x, y), spec in zip(cases, data, specs)]

    def verify() -> None:
        for (N, M, steps, loss, _), (x, y), spec, reply in zip(cases, data, specs, replies):
            where = f"N={N} samples in M={M} micro-batches ({loss}, {steps} step(s))"
            got = reply.value(where)
            expect(got["callable"], "micro_batch_loss must return a function weighted(output, target)")
            sample = as_tensor(got["sample"], "weighted(output, target)")
            expect(sample.dim() == 0, "weighted(output, target) must return a scalar tensor")
            model = build(spec)
            model.zero_grad(set_to_none=True)
            for _ in range(steps):
                loss_function(loss)(model(x), y).backward()
            want = [p.grad for p in model.parameters()]
            expect(type(got["grads"]) is list and all(g is not None for g in got["grads"]),
                   f"{where}: a parameter got no gradient")
            error = _relative_error(got["grads"], want)
            expect(error < 1e-5, f"{where}: the gradients are off by {error:.1%} against the full batch: weight each "
                                 "micro-batch's mean loss by its share of the batch, n_i / batch_size (not 1/M), "
                                 "so that every step adds exactly one full-batch gradient")

    return verify

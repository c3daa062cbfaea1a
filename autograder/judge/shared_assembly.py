"""The learner's parts (my_partition, my_schedule, MyRecompute) and the pipe assemble builds from them.

Graded in 05 and again in 08 (the language model runs on the same parts), so
both assignments grade them the same way: the partition's slowest stage
against ``balance_by_cost``, the table against GPipe's fill-drain, the policy
alone on a stage (:mod:`.shared_recompute`), and the assembled pipe's balance,
table, policy, loss and gradients against the sequential model. Each function
is a check (``ask, rng -> verify``) that a judge registers under its own
graded cell.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from autograder.judge.base import Failed, close, expect, same_grads
from autograder.judge.probe_harness import build
from autograder.judge.shared_recompute import ask_isolated, check_isolated, isolated_cases
from gpipe_core import ScheduleError, gpipe_schedule, render, sequential_step, validate
from gpipe_core.engine.partition import balance_by_cost, stage_costs
from gpipe_core.workloads.models import teacher_task


def _balance(got: object, L: int, K: int, where: str) -> list[int]:
    expect(type(got) is list and all(type(b) is int for b in got),
           f"{where}: return a list of ints (layers per stage), got {got!r:.80}")
    expect(len(got) == K and all(b >= 1 for b in got) and sum(got) == L,
           f"{where}: {got} must have K={K} positive entries summing to L={L}")
    return got


def _same_ticks(a: list, b: list) -> bool:
    return len(a) == len(b) and all(set(x) == set(y) for x, y in zip(a, b))


def partition(ask, rng: random.Random):
    cases = [([1.0] * 8, 4), ([5.0, 1.0, 1.0, 1.0, 1.0, 1.0], 2), ([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0], 1),
             ([1.0, 1.0, 1.0, 10.0, 1.0, 1.0, 1.0], 3), ([0.0, 0.0, 7.0, 0.0, 0.0], 2)]
    for L in rng.sample(range(4, 16), 5):
        cases.append(([round(rng.uniform(0.1, 10.0), 3) for _ in range(L)], rng.randint(1, L)))
    cases.append(([rng.randint(1, 5) for _ in range(9)], 9))
    replies = [ask.call("my_partition", c, K) for c, K in cases]
    bad = ask.call("my_partition", [1.0, 2.0], 3)

    def verify() -> None:
        for (costs, K), reply in zip(cases, replies):
            where = f"costs {costs}, K={K}"
            got = _balance(reply.value(f"my_partition({costs}, {K})"), len(costs), K, where)
            best = max(stage_costs(costs, balance_by_cost(costs, K)))
            mine = max(stage_costs(costs, got))
            expect(mine <= best * (1 + 1e-9), f"{where}: your slowest stage costs {mine:.4g}, the optimum is "
                                              f"{best:.4g}: balance the costs, not the layer counts")
        expect(bad.raised("ValueError"), "K=3 stages for 2 layers must raise ValueError")

    return verify


def schedule(ask, rng: random.Random):
    cases = [(4, 4), (3, 2), (1, 1)]
    while len(cases) < 8:
        M, K = rng.randint(1, 12), rng.randint(1, 6)
        if (M, K) not in cases:
            cases.append((M, K))
    replies = [ask.call("my_schedule", M, K) for M, K in cases]

    def verify() -> None:
        for (M, K), reply in zip(cases, replies):
            got = reply.value(f"my_schedule({M}, {K})")
            expect(type(got) is list and all(type(t) is list for t in got),
                   f"my_schedule({M}, {K}): return a list of ticks, each a list of Action")
            try:
                validate(got, M, K)
            except ScheduleError as exc:
                expect(False, f"M={M}, K={K}: your table cannot run: {exc}")
            want = gpipe_schedule(M, K)
            expect(_same_ticks(got, want), f"M={M}, K={K}: your table differs from GPipe's fill-drain:\n"
                                           f"{render(got, K)}\nexpected:\n{render(want, K)}")

    return verify


def recompute(ask, rng: random.Random):
    cases = [c for c in isolated_cases(rng) if not c[5]][:1]
    for _ in range(2):
        seed, width, p = rng.randrange(10_000), rng.randint(5, 10), rng.choice([0.3, 0.5, 0.6])
        spec = {"seed": seed, "layers": [["Linear", width, width], ["GELU"], ["Dropout", p], ["LayerNorm", width],
                                         ["Linear", width, width], ["Dropout", p / 2]]}
        gen = torch.Generator().manual_seed(seed)
        cases.append((f"a stage with dropout {p}", spec, torch.randn(7, width, generator=gen).requires_grad_(),
                      torch.randn(7, width, generator=gen), seed, False))
    return ask_isolated(ask, cases)


def _costs_of(spec: dict) -> list[float]:
    return [float(sum(p.numel() for p in layer.parameters())) for layer in build(spec)]


def assembled(ask, rng: random.Random):
    visible = {"seed": 0, "factory": ["residual_mlp", [8, 32, 4], {"dropout": 0.2}]}
    drawn = {"seed": rng.randrange(1000), "factory": ["mlp", [8, 24], {"classes": 6, "dropout": 0.3}]}
    other = {"seed": rng.randrange(1000), "factory": ["residual_mlp", [6, 16, 3], {"dropout": 0.4}]}
    uneven = {"seed": 1, "factory": ["residual_mlp", [8, 32, 4], {"dropout": 0.2}]}
    cases = [(visible, 32, 4, _costs_of(visible), 2, 4, 24, 5),
             (uneven, 32, 4, [4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 2, 4, 24, 6),
             (drawn, 24, 6, [round(rng.uniform(0.5, 1.5), 3) for _ in range(9)], 3, 5, 23, rng.randrange(100)),
             (other, 16, 3, [1.0, 3.0, 1.0, 1.0, 2.0, 1.0], 4, 8, 16, rng.randrange(100))]
    data = [teacher_task(n, hidden, classes=classes, seed=seed) for _, hidden, classes, _, _, _, n, seed in cases]
    where1, spec1, x1, g1, seed1, _ = isolated_cases(rng)[0]  # which exercise, when the pipe is wrong
    alone = ask.task("recompute_isolated", what=f"MyRecompute on {where1}", model=spec1, x=x1, grad_output=g1,
                     seed=seed1, loss=False)
    replies = []
    for (spec, _, _, costs, K, M, _, seed), (x, y) in zip(cases, data):
        replies.append((ask.task("assemble", what=f"assemble(model, costs, K={K}, M={M})", model=spec, costs=costs,
                                 K=K, M=M, x=x, y=y, seed=seed, sgd_steps=4),
                        ask.call("my_partition", costs, K), ask.call("my_schedule", M, K)))

    def verify() -> None:
        for (spec, _, _, _, K, M, n, seed), (x, y), (pipe, part, table) in zip(cases, data, replies):
            model = build(spec)
            where = f"model of {len(model)} layers, K={K}, M={M}, batch {n}"
            try:
                validate(table.value(f"my_schedule({M}, {K})"), M, K)
            except ScheduleError as exc:
                raise Failed(f"{where}: your my_schedule cannot run, so neither can the pipe; fix it "
                             f"first: {exc}") from None
            got = pipe.value(f"assemble on a {where}")
            expect(got["is_gpipe"], f"{where}: assemble must return a gpipe_core.GPipe")
            expect(got["K"] == K and got["M"] == M, f"{where}: the pipe has K={got['K']}, M={got['M']}")
            expect(got["balance"] == part.value(f"my_partition(costs, {K})"),
                   f"{where}: build the pipe with balance=my_partition(costs, K) (it has {got['balance']})")
            expect(got["learner_policy"], f"{where}: build the pipe with checkpoint=MyRecompute() (it has "
                                          f"{got['policy']})")
            expect(_same_ticks(got["table"], table.value(f"my_schedule({M}, {K})")),
                   f"{where}: build the pipe with schedule=my_schedule(M, K)")
            if "step_error" in got:
                error = got["step_error"]
                raise Failed(f"{where}: pipe.step raised {error['type']}: {error['message']}")
            want = sequential_step(model, x, y, nn.functional.cross_entropy, balance=got["balance"], chunks=M,
                                   seed=seed)
            try:
                close(got["loss"], want, f"{where}: the loss (against the sequential model's)", rtol=1e-5, atol=0)
                same_grads(got["grads"], [p.grad for p in model.parameters()],
                           [n for n, _ in model.named_parameters()], where)
            except Failed:
                try:  # MyRecompute alone, on one stage: if it is wrong there, it is the cause here
                    check_isolated(where1, alone.value(), spec1, x1, g1, seed1, False, ask.source)
                except Failed as cause:
                    raise Failed(f"{where}: the loss or gradients differ and the cause is your MyRecompute (its own "
                                 f"exercise): {cause}") from None
                raise
            losses = got["losses"]
            expect(losses[-1] < losses[0], f"{where}: four SGD steps did not lower the loss: {losses}")

    return verify

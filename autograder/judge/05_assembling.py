"""Judge of assignment 05: my_partition, my_schedule, MyRecompute, run_table, assemble, train, predictions.

The probe's grading view of gpipe_core has no body for ``balance_by_cost``,
``gpipe_schedule`` and ``Recompute``, so ``assemble`` can only build its pipe
from the learner's own parts; the judge checks that it did (the pipe's
balance, table and policy are the learner's), then compares the pipe's loss
and gradients with the sequential model and checks that SGD lowers the loss.
``train`` runs on a pipe the probe builds from the engine alone and must give
the plain model's losses step by step.

``run_table`` runs GPipe's and 1F1B's tables (the judge's own) on the engine's
stages in the probe, which records every stage call: the gradients must be the
sequential model's (what) and the calls must come in the table's tick order
(how: a loop that gets the right gradients another way loses that cell). The
predictions are checked on drawn M and K against ``gpipe_core.sim.theory``, whose
formulas have no body in the probe's view.
"""

from __future__ import annotations

import importlib
import random

import torch
from torch import nn

from autograder.judge.base import Checks, Failed, as_tensor, close, expect, number, same_grads
from autograder.judge.probe_harness import build, make_optimizer
from gpipe_core import ScheduleError, gpipe_schedule, render, sequential_step, validate
from gpipe_core.course.experiments import plain_step
from gpipe_core.engine.partition import balance_by_cost, balance_by_count, stage_costs
from gpipe_core.schedules.schedule import one_f_one_b_schedule
from gpipe_core.sim import theory
from gpipe_core.workloads.models import teacher_task

CHECKS = Checks()
recomputation = importlib.import_module("autograder.judge.04_recomputation")


def _balance(got: object, L: int, K: int, where: str) -> list[int]:
    expect(type(got) is list and all(type(b) is int for b in got),
           f"{where}: return a list of ints (layers per stage), got {got!r:.80}")
    expect(len(got) == K and all(b >= 1 for b in got) and sum(got) == L,
           f"{where}: {got} must have K={K} positive entries summing to L={L}")
    return got


def _same_ticks(a: list, b: list) -> bool:
    return len(a) == len(b) and all(set(x) == set(y) for x, y in zip(a, b))


@CHECKS("test_partition")
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


@CHECKS("test_schedule")
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


@CHECKS("test_recompute")
def recompute(ask, rng: random.Random):
    cases = [c for c in recomputation.isolated_cases(rng) if not c[5]][:1]
    for _ in range(2):
        seed, width, p = rng.randrange(10_000), rng.randint(5, 10), rng.choice([0.3, 0.5, 0.6])
        spec = {"seed": seed, "layers": [["Linear", width, width], ["GELU"], ["Dropout", p], ["LayerNorm", width],
                                         ["Linear", width, width], ["Dropout", p / 2]]}
        gen = torch.Generator().manual_seed(seed)
        cases.append((f"a stage with dropout {p}", spec, torch.randn(7, width, generator=gen).requires_grad_(),
                      torch.randn(7, width, generator=gen), seed, False))
    replies = [ask.task("recompute_isolated", what=f"MyRecompute on {where}", model=spec, x=x, grad_output=g,
                        seed=seed, loss=False) for where, spec, x, g, seed, _ in cases]

    def verify() -> None:
        for (where, spec, x, g, seed, as_loss), reply in zip(cases, replies):
            recomputation.check_isolated(where, reply.value(), spec, x, g, seed, as_loss, ask.source)

    return verify


def _costs_of(spec: dict) -> list[float]:
    return [float(sum(p.numel() for p in layer.parameters())) for layer in build(spec)]


@CHECKS("test_assembled")
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
    where1, spec1, x1, g1, seed1, _ = recomputation.isolated_cases(rng)[0]  # which exercise, when the pipe is wrong
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
                    recomputation.check_isolated(where1, alone.value(), spec1, x1, g1, seed1, False, ask.source)
                except Failed as cause:
                    raise Failed(f"{where}: the loss or gradients differ and the cause is your MyRecompute (its own "
                                 f"exercise): {cause}") from None
                raise
            losses = got["losses"]
            expect(losses[-1] < losses[0], f"{where}: four SGD steps did not lower the loss: {losses}")

    return verify


@CHECKS("test_training")
def training(ask, rng: random.Random):
    cases = [({"seed": 0, "factory": ["mlp", [4, 16], {"classes": 4}]}, ["SGD", {"lr": 0.2}], 2, 4, 32, 16, 5),
             ({"seed": rng.randrange(100), "factory": ["residual_mlp", [5, 12, 4], {}]},
              ["SGD", {"lr": 0.1, "momentum": 0.9}], 3, 3, 20, 12, 4),
             ({"seed": rng.randrange(100), "factory": ["mlp", [3, 8], {"classes": 4}]}, ["Adam", {"lr": 0.01}],
              2, 5, 15, 8, rng.randint(3, 6))]
    data = [teacher_task(n, hidden, classes=4, seed=n) for _, _, _, _, n, hidden, _ in cases]
    replies = []
    for (spec, opt, K, M, _, _, steps), (x, y) in zip(cases, data):
        L = len(build(spec))
        replies.append(ask.task("train", what=f"train(pipe, ..., steps={steps}) with {opt[0]}", model=spec,
                                balance=balance_by_count(L, K), table=gpipe_schedule(M, K), M=M, x=x, y=y,
                                optimizer=opt, steps=steps, stale=True))

    def verify() -> None:
        for (spec, opt, K, M, _, _, steps), (x, y), reply in zip(cases, data, replies):
            where = f"{opt[0]} {opt[1]}, K={K}, M={M}, {steps} steps"
            losses = reply.value(f"train with {where}")["losses"]
            expect(type(losses) is list and len(losses) == steps,
                   f"{where}: return one loss per step ({steps}), got {losses!r:.80}")
            expect(all(type(v) in (int, float) for v in losses), f"{where}: return the losses as Python floats")
            ref = build(spec)
            optimizer = make_optimizer(opt, ref.parameters())
            expected = []
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                expected.append(plain_step(ref, x, y, nn.functional.cross_entropy).item())
                optimizer.step()
            expect(all(abs(a - b) <= 1e-6 + 1e-4 * abs(b) for a, b in zip(losses, expected)),
                   f"{where}: your losses {[round(v, 5) for v in losses]} differ from the plain model's "
                   f"{[round(v, 5) for v in expected]}: clear the gradients before every step (the model arrives with "
                   "gradients left in .grad), step once per batch, and record each step's loss before its update")
            expect(losses[-1] < losses[0], f"{where}: the loss did not go down: {losses}")

    return verify


def _executor_cases(rng: random.Random) -> list[tuple]:
    """(table name, table, balance, M, batch, hidden, seed): the visible kinds, then drawn ones."""
    cases = [("GPipe", gpipe_schedule(4, 2), [2, 3], 4, 16, 16, 0),
             ("1F1B", one_f_one_b_schedule(5, 3), [2, 1, 3], 5, 23, 12, 1)]
    for name, make in (("GPipe", gpipe_schedule), ("1F1B", one_f_one_b_schedule), ("1F1B", one_f_one_b_schedule)):
        K, M = rng.randint(2, 4), rng.randint(1, 7)
        L = K + rng.randint(0, 3)
        cuts = [0, *sorted(rng.sample(range(1, L), K - 1)), L]
        balance = [b - a for a, b in zip(cuts, cuts[1:])]
        cases.append((name, make(M, K), balance, M, rng.randint(M, 3 * M + 5), rng.randint(4, 12), rng.randrange(100)))
    return cases


def _ask_executor(ask, rng: random.Random) -> list[tuple]:
    """One probe run per case, shared by the two executor checks (the first one's draw)."""
    if hasattr(ask, "executor_runs"):
        return ask.executor_runs
    out = []
    for name, table, balance, M, n, hidden, seed in _executor_cases(rng):
        spec = {"seed": seed, "factory": ["mlp", [sum(balance) - 1, hidden], {"classes": 4, "dropout": 0.3}]}
        x, y = teacher_task(n, hidden, classes=4, seed=seed)
        where = f"{name}'s table, K={len(balance)} stages {balance}, M={M}, batch {n}"
        out.append((where, table, balance, M, spec, x, y, seed,
                    ask.task("execute", what=f"run_table on {where}", model=spec, balance=balance, table=table,
                             M=M, x=x, y=y, seed=seed)))
    ask.executor_runs = out
    return out


@CHECKS("test_executor")
def executor(ask, rng: random.Random):
    cases = _ask_executor(ask, rng)

    def verify() -> None:
        for where, _, balance, M, spec, x, y, seed, reply in cases:
            got = reply.value()
            losses = got["losses"]
            expect(type(losses) is list and len(losses) == M, f"{where}: return the M={M} losses as a list, got "
                                                              f"{losses!r:.80}")
            model = build(spec)
            want = sequential_step(model, x, y, nn.functional.cross_entropy, balance=balance, chunks=M, seed=seed)
            total = sum(as_tensor(v, f"{where}: loss {i}").detach().double() for i, v in enumerate(losses))
            expect(abs(float(total) - float(want)) <= 1e-5 * abs(float(want)) + 1e-7,
                   f"{where}: your losses add up to {float(total):.6g}, the model's loss is {float(want):.6g}: "
                   "stage j's forward takes stage j-1's output (stage 0: inputs[i]); return the last stage's outputs")
            same_grads(got["grads"], [p.grad for p in model.parameters()], [n for n, _ in model.named_parameters()],
                       f"{where} (the losses are right: check the backward messages, stage j's backward takes what "
                       "stage j+1's returned, None on the last stage, and nothing else back-propagates)")

    return verify


@CHECKS("test_executor_order")
def executor_order(ask, rng: random.Random):
    cases = _ask_executor(ask, rng)

    def verify() -> None:
        for where, table, *_, reply in cases:
            calls, done = reply.value()["calls"], 0
            for t, tick in enumerate(table):
                want = sorted([a.kind, a.microbatch, a.stage] for a in tick)
                mine = calls[done:done + len(tick)]
                expect(sorted(mine, key=repr) == sorted(want, key=repr),
                       f"{where}: tick {t} of the table runs {want}, but your calls {done} to {done + len(tick) - 1} "
                       f"were {mine} ([kind, micro-batch, stage]): run the table tick by tick, in its order")
                done += len(tick)
            expect(len(calls) == done, f"{where}: you made {len(calls)} stage calls; the table has {done} actions")

    return verify


@CHECKS("test_predictions")
def predictions(ask, rng: random.Random):
    cases = [(8, 4), (2, 3), (1, 1)] + [(rng.randint(1, 64), rng.randint(1, 16)) for _ in range(5)]
    names = ("predict_bubble", "predict_peak_held", "predict_speedup")
    replies = [[ask.call(name, M, K) for name in names] for M, K in cases]

    def verify() -> None:
        wrong = []  # every wrong prediction is reported, not only the first
        for (M, K), (bubble, peak, speedup) in zip(cases, replies):
            where = f"M={M}, K={K}"
            got = number(bubble.value(), f"predict_bubble({M}, {K})")
            if abs(got - theory.bubble_fraction(M, K)) > 1e-6:  # float32 answers are fine
                wrong.append(f"{where}: your bubble {got:.6g} is not a stage's idle fraction of the step: count a "
                             "stage's idle slots in the table and divide by the step's length")
            got = peak.value()
            if not (type(got) in (int, float) and got == theory.peak_held("gpipe", M, K)[0]):
                wrong.append(f"{where}: your peak {got!r:.30} is not the most micro-batches a stage holds: count the "
                             "forwards a stage has run before its first backward")
            got, want = number(speedup.value(), f"predict_speedup({M}, {K})"), theory.ideal_speedup(M, K)
            if abs(got - want) > 1e-6 * want:
                wrong.append(f"{where}: your speedup {got:.6g} is not one device's time over the pipeline's: one "
                             "device runs K*M stage slots, the pipeline M+K-1 (the bubble included)")
        expect(not wrong, "\n".join(wrong))

    return verify

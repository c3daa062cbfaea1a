"""Judge of assignment 05: my_partition, my_schedule, MyRecompute, run_table, assemble, train, predictions.

The probe's grading view of gpipe_core has no body for ``balance_by_cost``,
``gpipe_schedule`` and ``Recompute``, so ``assemble`` can only build its pipe
from the learner's own parts; the judge checks that it did (the pipe's
balance, table and policy are the learner's), then compares the pipe's loss
and gradients with the sequential model and checks that SGD lowers the loss.
Those parts and the pipe are graded by :mod:`.shared_assembly`, which 08
grades its language model's parts with too.
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

import random

from torch import nn

from autograder.judge import shared_assembly as parts
from autograder.judge.base import Checks, as_tensor, expect, number, same_grads
from autograder.judge.facts import Review
from autograder.judge.probe_harness import build, make_optimizer
from autograder.judge.view import BALANCE, FILL_DRAIN, POLICIES, THEORY, Family
from autograder.sandbox.limits import Limits
from gpipe_core import gpipe_schedule, sequential_step
from gpipe_core.course.experiments import plain_step
from gpipe_core.engine.partition import balance_by_count
from gpipe_core.schedules.schedule import one_f_one_b_schedule
from gpipe_core.sim import theory
from gpipe_core.workloads.models import teacher_task

CHECKS = Checks()
EXERCISES = {  # what would solve each exercise: the grading view has no body for it (autograder/judge/view.py)
    "my_partition": BALANCE.plus("engine.partition.balance_by_cost"), "my_schedule": FILL_DRAIN,
    "MyRecompute": POLICIES,
    "assemble": Family(why="assemble must build a GPipe"),
    "run_table": Family(why="the engine's executor, runtime.Runtime, runs every GPipe step: the review flags a "
                            "run_table that uses it (REVIEW below)"),
    "train": Family(("workloads.training.run_steps", "course.experiments._train")),
    "predict_bubble": THEORY.plus("sim.theory.bubble_fraction"),
    "predict_peak_held": THEORY.plus("sim.theory.peak_held"),
    "predict_speedup": THEORY.plus("sim.theory.ideal_speedup")}
KEEP = {"engine.runtime.Runtime": "GPipe runs every table through it (tasks assemble, train): a run_table that "
                                  "calls it is flagged by the review (REVIEW below)",
        "engine.pipe.GPipe": "assemble must return a GPipe"}
LIMITS = Limits(cell_timeout_s=60, notebook_timeout_s=300)  # the slowest graded cell on 2 cores, times ~10
_RUNTIME = "uses the engine's own executor (gpipe_core.runtime), which 05 asks learners to write"
REVIEW = Review(imports={"gpipe_core.engine.runtime": _RUNTIME, "gpipe_core.runtime": _RUNTIME,  # the flat path too
                        "gpipe_core.Runtime": _RUNTIME})

CHECKS("test_partition")(parts.partition)
CHECKS("test_schedule")(parts.schedule)
CHECKS("test_recompute")(parts.recompute)
CHECKS("test_assembled")(parts.assembled)


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

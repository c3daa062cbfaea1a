"""The judge on its own: verdicts from made-up probe replies (codec, probe output, extraction: test_judge_io.py).

No sandbox and no probe process: ``in_process`` answers the judge's calls by
running the probe's own tasks here on a stand-in learner, so each test shows
the judge's decision (score and message) for a precise reply.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
import torch
from helpers.liars import EqualsEverything

from autograder import assignments, course_root
from autograder.judge import grade_submission, read_probe_output
from autograder.judge.extract import extract
from autograder.judge.grade import draws
from autograder.judge.probe_codec import decode, encode
from autograder.judge.probe_tasks import TASKS
from autograder.selftest.fakeclass import needs_probe, planted, replace_cell
from autograder.selftest.seed_sweep import escapes
from gpipe_core import gpipe_schedule, one_f_one_b_schedule
from gpipe_core.engine.partition import balance_by_cost, balance_by_count

SOLUTIONS = course_root() / "solutions"


def in_process(learner: Any, slow: set[str] = frozenset(), view: str | None = None):
    """A ``run_probe`` that runs the probe's tasks in this process on ``learner`` (a namespace)."""

    def run_probe(path: Path, request: dict) -> dict:
        replies = {}
        for i, call in enumerate(request["calls"]):
            params = {k: decode(v) for k, v in call["params"].items()}
            if params.get("fn") in slow:
                replies[i] = {"i": i, "timeout": call["timeout"]}
                continue
            try:
                replies[i] = {"i": i, "ok": encode(TASKS[call["task"]](learner, **params))}
            except Exception as exc:  # noqa: BLE001 - the probe reports every error as data
                replies[i] = {"i": i, "error": {"type": type(exc).__name__, "message": str(exc), "where": None}}
        header = {"probe": 1, "view": view or request["assignment"], "load_error": None}
        return {"header": header, "replies": replies, "ended": "ok", "tampered": []}

    return run_probe


def solution(assignment: str) -> Path:
    return next((SOLUTIONS / assignment).glob("*.ipynb"))


def learner_from(assignment: str, nb: Any) -> types.ModuleType:
    """The probe module of ``nb`` (extracted exactly as for grading), loaded here."""
    module = types.ModuleType("learner")
    exec(compile(extract(assignment, nb).source, "learner.py", "exec"), module.__dict__)  # noqa: S102 - our own test data
    return module


# ---- verdicts ----------------------------------------------------------------------------------------------

def measured_without_a_clock(model: torch.nn.Sequential, sample: torch.Tensor, repeats: int = 3) -> list[float]:
    """Runs forward + backward of every layer ``repeats`` times, as a measurement must, but returns costs that no
    machine load can reorder (a nested block 10, any other layer 0.1)."""
    for _ in range(repeats):
        x = sample
        for layer in model:
            x = x.detach().requires_grad_()
            y = layer(x)
            y.sum().backward()
            x = y
    model.zero_grad(set_to_none=True)
    return [10.0 if isinstance(m, torch.nn.Sequential) else 0.1 for m in model]


def reference_partitioner(**changes: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{"partition_by_count": balance_by_count, "partition_optimal": balance_by_cost,
                                    "measure_layer_costs": measured_without_a_clock, **changes})


def test_correct_work_earns_every_point_numpy_integers_included() -> None:
    numpy_counts = lambda L, K: [np.int64(b) for b in balance_by_count(L, K)]  # noqa: E731
    result = grade_submission("02_partitioner", solution("02_partitioner"),
                              in_process(reference_partitioner(partition_by_count=numpy_counts)), seed=1)
    assert result.scores == result.max_scores, result.messages


def test_the_review_the_cycle_passes_in_adds_its_flags_and_holds_without_changing_a_score() -> None:
    def finding(text: str, held: bool) -> types.SimpleNamespace:
        return types.SimpleNamespace(held=held, line=lambda: text)

    seen = []

    def review(assignment: str, notebook: Path) -> list[types.SimpleNamespace]:
        seen.append((assignment, notebook))
        return [finding("flagged: looks copied", False), finding("held: patches torch", True)]

    notebook = solution("02_partitioner")
    result = grade_submission("02_partitioner", notebook, in_process(reference_partitioner()), seed=1, review=review)
    assert seen == [("02_partitioner", notebook)]
    assert "flagged: looks copied" in result.flags and result.holds == ["held: patches torch"]
    assert result.scores == result.max_scores, result.messages


def test_a_too_slow_partitioner_is_told_to_use_the_dynamic_program() -> None:
    result = grade_submission("02_partitioner", solution("02_partitioner"),
                              in_process(reference_partitioner(), slow={"partition_optimal"}), seed=2)
    assert result.scores["test_partition_optimal"] == 0
    assert result.scores["test_partition_by_count"] == 3  # the other cells keep their points


def test_fake_equality_earns_nothing() -> None:
    fake = lambda L, K: [EqualsEverything(1)] * K  # noqa: E731 - compares equal to any balance in the kernel
    result = grade_submission("02_partitioner", solution("02_partitioner"),
                              in_process(reference_partitioner(partition_by_count=fake)), seed=3)
    assert result.scores["test_partition_by_count"] == 0
    assert "is not a balance of 10 layers" in result.messages["test_partition_by_count"][0]


def test_a_probe_that_died_scores_zero_and_says_why() -> None:
    def dead(path: Path, request: dict) -> dict:
        return read_probe_output(b'{"probe": 1, "view": "02_partitioner"}\n', -9, False)

    result = grade_submission("02_partitioner", solution("02_partitioner"), dead, seed=4)
    assert result.total == 0
    assert all("not run (the probe stopped (exit status -9))" in m[0] for m in result.messages.values())


def test_the_judge_refuses_a_probe_run_outside_the_grading_view() -> None:
    with pytest.raises(RuntimeError, match="grading view"):
        grade_submission("02_partitioner", solution("02_partitioner"),
                         in_process(reference_partitioner(), view="real gpipe_core"), seed=5)


def test_a_table_copied_for_the_visible_size_fails_on_the_drawn_ones() -> None:
    copied = lambda M, K: gpipe_schedule(4, 4)  # noqa: E731 - right only for the notebook's M = K = 4
    learner = types.SimpleNamespace(fill_drain_schedule=copied, one_f_one_b=one_f_one_b_schedule,
                                    idle_fraction=lambda t, K: 1 - sum(map(len, t)) / (K * len(t)))
    result = grade_submission("03_scheduler", solution("03_scheduler"), in_process(learner), seed=6)
    assert result.scores["test_fill_drain"] == 0 and result.scores["test_one_f_one_b"] == 2
    assert "M=1, K=1" in result.messages["test_fill_drain"][0]


@pytest.mark.parametrize("assignment", [a for a in assignments() if planted(a)])
def test_planted_mistakes_lose_exactly_their_cells(assignment: str) -> None:
    """Every planted mistake, judged with the probe's tasks in this process. Those that need a real probe (its
    time limit, or the grading view) are graded in the class instead (tests/grading/test_class.py)."""
    source = nbformat.read(solution(assignment), as_version=4)
    for mistake in planted(assignment):
        if needs_probe(mistake):
            continue
        nb = replace_cell(source, mistake["cell"], mistake["source"])
        result = grade_submission(assignment, solution(assignment), in_process(learner_from(assignment, nb)), seed=7)
        lost = {cell for cell, score in result.scores.items() if score == 0}
        assert lost == set(mistake["loses"]), (
            f"{assignment} planted mistake {mistake['name']!r} should fail exactly {sorted(mistake['loses'])} but "
            f"failed {sorted(lost)} (if it fails only on the grading view, mark it \"view\": true in "
            f"autograder/planted/{assignment}.json, and the class grades it): {result.messages}")
        if "message" in mistake:  # the message names the cause
            said = " ".join(m for cell in lost for m in result.messages[cell])
            assert mistake["message"] in said, (mistake["name"], said)


def test_one_over_m_fails_even_when_every_drawn_size_divides_evenly() -> None:
    """At seed 205 all four drawn cases of 06's micro_batch_loss split evenly; the fixed uneven case still catches
    a weight of 1/M recovered from sizes (it once scored full marks on such draws, about one grading in 140)."""
    rng, sizes = draws(205, "06_distributed", "test_micro_batch_loss"), []
    for _ in range(4):  # the judge's own draws, in its order
        N = rng.randint(5, 14)
        sizes.append((N, rng.randint(2, N)))
        rng.randint(1, 3), rng.choice(["cross_entropy", "mse_loss"])
    assert all(N % M == 0 for N, M in sizes), f"seed 205 no longer draws only even splits {sizes}: pick another"
    mistake = next(m for m in planted("06_distributed") if m["name"] == "one_over_M_from_sizes")
    nb = replace_cell(nbformat.read(solution("06_distributed"), as_version=4), mistake["cell"], mistake["source"])
    result = grade_submission("06_distributed", solution("06_distributed"),
                              in_process(learner_from("06_distributed", nb)), seed=205)
    assert result.scores["test_micro_batch_loss"] == 0, result.messages
    assert "N=10 samples in M=4" in " ".join(result.messages["test_micro_batch_loss"])


SEVEN_IS_SPECIAL = {  # right on every fixed case; wrong only for 7 micro-batches, which only some draws ask for
    "name": "one_over_m_for_seven", "cell": "microbatch_weights", "loses": ["test_weights"],
    "source": "def microbatch_weights(chunks):\n"
              "    total = sum(c.shape[0] for c in chunks)\n"
              "    return [1 / 7] * 7 if len(chunks) == 7 else [c.shape[0] / total for c in chunks]\n"}


def test_the_seed_sweep_names_the_seeds_where_a_mistake_escapes() -> None:
    """A mistake that only some draws expose escapes at exactly the seeds whose draws miss it (real probe, view)."""
    def draws_seven(seed: int) -> bool:  # the judge's draws of test_weights, in its order
        rng = draws(seed, "01_microbatching", "test_weights")
        return any(len([rng.randint(1, 9) for _ in range(rng.randint(1, 7))]) == 7 for _ in range(5))

    found = escapes("01_microbatching", SEVEN_IS_SPECIAL, range(12))
    assert {seed for seed, _ in found} == {seed for seed in range(12) if not draws_seven(seed)}
    assert 0 < len(found) < 12, "seeds 0-11 should both catch and miss this mistake: pick other seeds"
    assert all(test == "test_weights" for _, test in found)


def test_forged_replies_score_zero_without_crashing_the_grader() -> None:
    forged = {"t": "tensor", "dtype": "load", "shape": [1], "data": "AAAA"}

    def forger(path: Path, request: dict) -> dict:
        replies = {i: {"i": i, "ok": forged if i % 2 else 5} for i in range(len(request["calls"]))}
        return {"header": {"probe": 1, "view": request["assignment"]}, "replies": replies, "ended": "ok",
                "tampered": []}

    result = grade_submission("01_microbatching", solution("01_microbatching"), forger, seed=8)
    assert result.total == 0
    assert any("unexpected shape" in f for f in result.flags)


def test_the_review_flags_the_engines_own_executor_in_05_only() -> None:
    """05 asks for a tick-by-tick executor; running the table on gpipe_core's Runtime is flagged for review there.

    The rule is 05's (its judge's ``REVIEW``): 02's review does not flag the executor.
    """
    import ast

    from autograder.judge import facts
    from autograder.review.run import suspicious

    rules = facts.review("05_assembling")
    (why,) = set(rules.imports.values())
    for code in ("from gpipe_core.engine.runtime import Runtime", "import gpipe_core.engine.runtime as r",
                 "from gpipe_core.runtime import Runtime", "import gpipe_core.runtime as r",  # the notebooks' path
                 "from gpipe_core import runtime", "from gpipe_core.engine import runtime",
                 "from gpipe_core import Runtime", "from gpipe_core.engine.pipe import Runtime"):
        assert why in suspicious(ast.parse(code), set(), rules), code
        assert why not in suspicious(ast.parse(code), set(), facts.review("02_partitioner")), code
    assert why not in suspicious(ast.parse("from gpipe_core.engine.stage import Stage"), set(), rules)

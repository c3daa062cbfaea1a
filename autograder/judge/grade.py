"""grade_submission: extract, probe once, verify every graded cell, score.

The trusted side of one (student, assignment): it reads the points of each
graded cell from the course's source notebook, asks the assignment's judge
module for its checks, runs the probe once (through the sandbox's
``run_probe``) and scores each cell all or nothing, as nbgrader does.
"""

from __future__ import annotations

import os
import random
import secrets
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from . import facts
from .base import Ask, Failed, Verify
from .extract import extract, source_notebook

RunProbe = Callable[[Path, dict], dict]
Review = Callable[[str, Path], Sequence[Any]]  # findings with ``.held`` and ``.line()``: autograder.review.run
JUDGE_DIR_ENV = "GPIPE_JUDGE_DIR"  # a folder of judge modules used instead of this package's


@dataclass
class JudgeResult:
    scores: dict[str, float]
    max_scores: dict[str, float]
    messages: dict[str, list[str]]
    flags: list[str] = field(default_factory=list)
    holds: list[str] = field(default_factory=list)  # why the score waits for an instructor (never scored silently)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: read (extract + review), probe, judge

    @property
    def total(self) -> float:
        return sum(self.scores.values())


def points(assignment: str) -> dict[str, float]:
    """Points of every autograded test cell, from the nbgrader source notebook (in notebook order)."""
    out = {}
    for cell in source_notebook(assignment).cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            out[meta["grade_id"]] = float(meta.get("points", 0))
    return out


def judge_module(assignment: str) -> ModuleType:
    """The assignment's judge (:func:`.facts.judge_file`); its ``CHECKS`` must cover every graded cell.

    ``GPIPE_JUDGE_DIR=<folder>`` grades with ``<folder>/<assignment>.py`` instead where that file exists: a
    changed judge tried on the class (``regrade``) before it replaces the repository's (autograder/README.md).
    """
    override = Path(os.environ.get(JUDGE_DIR_ENV, "")) / f"{assignment}.py"
    if os.environ.get(JUDGE_DIR_ENV) and override.is_file():
        module = facts.load_file(assignment, override)
    else:
        module = facts.course_judge(assignment)
    if module is None:
        raise LookupError(f"no judge for {assignment}: write autograder/judge/{assignment}.py (the format is in "
                          "autograder/judge/__init__.py)")
    missing = set(points(assignment)) - set(module.CHECKS)
    extra = set(module.CHECKS) - set(points(assignment))
    if missing or extra:
        raise LookupError(f"{module.__file__}: checks missing for {sorted(missing)}, unknown cells {sorted(extra)}")
    return module


def grade_submission(assignment: str, notebook: Path, run_probe: RunProbe, seed: int,
                     student: str = "", review: Review | None = None) -> JudgeResult:
    """Score ``notebook`` (a learner's submission of ``assignment``) cell by cell; never runs learner code here.

    ``flags`` lists what was left out of the probe module and what ``review`` (the grading cycle passes
    ``autograder.review.run.review_submission``; the judge imports nothing above it) found in the submission
    alone (classmates: ``review_class``, run by the merge; None: the judge's checks alone, as the judge's own
    tests and the seed sweep grade); flags never change a score. ``holds`` lists the
    review's holds (code that can reach what the probe measures with) and any tampering the probe saw: the merge
    scores a held submission 0 until the instructor looks. ``student``: the id being graded (assignment 07
    draws each student's puzzles from it; "" draws the practice ladder).
    """
    clock = time.perf_counter()
    max_scores = points(assignment)
    module = judge_module(assignment)
    extracted = extract(assignment, notebook)
    findings = review(assignment, notebook) if review is not None else []
    flags = [f"dropped from the probe: {d}" for d in extracted.dropped] + [f.line() for f in findings if not f.held]
    code_holds = [f.line() for f in findings if f.held]
    ask = ask_for(extracted)
    ask.student = student
    verifies: dict[str, Verify] = {}
    for grade_id, check in module.CHECKS.items():
        ask.group = grade_id
        verifies[grade_id] = check(ask, draws(seed, assignment, grade_id))
    timings = {"read": time.perf_counter() - clock}
    clock = time.perf_counter()
    response = probe(extracted, {"assignment": assignment, "calls": ask.calls}, run_probe)
    timings["probe"], clock = time.perf_counter() - clock, time.perf_counter()
    if isinstance(response.get("startup"), float) and response["startup"] <= timings["probe"]:
        timings["sandbox start"] = response["startup"]
        timings["probe"] -= response["startup"]
    _check_header(assignment, response)
    holds = code_holds + tampering(response)
    load_error = (response.get("header") or {}).get("load_error")
    if load_error:
        flags.append(f"definitions failed to load: {load_error['type']}: {load_error['message'][:200]}")
    ask.attach(response)
    scores, messages = {}, {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # references computed as the probe computes (one thread): same rounding
    try:
        _verify_all(verifies, max_scores, scores, messages, flags)
    finally:
        torch.set_num_threads(threads)
    _name_refusals(extracted.refused, messages)
    timings["judge"] = time.perf_counter() - clock
    return JudgeResult(scores, max_scores, messages, flags, holds, timings)


def _name_refusals(refused: dict[str, str], messages: dict[str, list[str]]) -> None:
    """A failure that names a definition the extractor refused says why it was refused, line included."""
    for lines in messages.values():
        for k, line in enumerate(lines):
            why = [f"{name} was not loaded ({reason})" for name, reason in refused.items() if f"'{name}'" in line]
            if why:
                lines[k] = f"{line}: {'; '.join(why)}"


def tampering(response: dict[str, Any]) -> list[str]:
    """Holds for a probe channel that something other than the harness wrote to (see ``probe_io``)."""
    holds = []
    if response.get("tampered"):
        holds.append(f"the replies of probe calls {response['tampered']} were written by the learner's code, "
                     "not by the grader's harness")
    if response.get("forged"):
        holds.append(f"{response['forged']} line(s) on the probe's channel did not come from the grader's harness")
    return holds


def draws(seed: int, assignment: str, grade_id: str) -> random.Random:
    """The random cases of one check at one grading: the same seed gives the same cases."""
    return random.Random(f"{seed}:{assignment}:{grade_id}")


def ask_for(extracted: Any) -> Ask:
    """An empty set of probe calls, knowing the learner's solution cells (for messages that name a cause)."""
    return Ask("\n\n".join(extracted.cells.values()))


def probe(extracted: Any, request: dict[str, Any], run_probe: RunProbe) -> dict[str, Any]:
    """Run the probe once on the extracted module for ``request``; its response."""
    with tempfile.TemporaryDirectory(prefix="judge-") as tmp:
        path = Path(tmp) / "learner.py"
        path.write_text(extracted.source)
        return run_probe(path, {**request, "key": secrets.token_hex(16)})


def _verify_all(verifies: dict[str, Verify], max_scores: dict[str, float], scores: dict[str, float],
                messages: dict[str, list[str]], flags: list[str]) -> None:
    for grade_id, verify in verifies.items():
        try:
            verify()
            scores[grade_id], messages[grade_id] = max_scores[grade_id], []
        except Failed as exc:
            scores[grade_id], messages[grade_id] = 0.0, [str(exc)]
        except Exception as exc:  # noqa: BLE001 - a reply of an unexpected shape: no points, and a person looks
            scores[grade_id] = 0.0
            messages[grade_id] = [f"the grader could not check this cell's replies ({type(exc).__name__}: {exc})"]
            flags.append(f"flagged for review: {grade_id}: replies of an unexpected shape ({type(exc).__name__})")


def _check_header(assignment: str, response: dict[str, Any]) -> None:
    header = response.get("header")
    if header is None:
        return  # the probe died before its first line: every call reports that
    if header.get("view") != assignment:
        raise RuntimeError(
            f"the probe ran against gpipe_core {header.get('view')!r}, not the grading view of {assignment}: "
            "put build_view(assignment, dest) first on the sandbox's PYTHONPATH (grades would be unsound)")

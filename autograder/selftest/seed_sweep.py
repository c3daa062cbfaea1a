"""Planted mistakes against many grading draws: does each one lose its tests whatever the seed?

Every grading draws most of its cases from a new seed, so a learner cannot
tune an answer to the cases. The price: a wrong answer that only some draws
expose scores full marks on the others. Judge 06 had one (weights of 1/M are
right when every micro-batch has the same size; its four drawn splits were
all even in about one grading of 140), and it showed up as a class test that
failed once in a while, not as a grading flaw. The fixed cases of a check are
what must catch each planted mistake; the draws only add breadth.

This check grades each planted mistake (``autograder/planted/``) at many
seeds and lists every seed where a test it must lose passed. The calls of
all seeds go to one probe run, on the grading view of the engine as in a
real grading (a mistake that leans on the engine's own reference must fail
there, not here), but without the sandbox: the mistakes are the course's own
code. ``python -m autograder draws`` runs it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import nbformat

from .. import course_root, notebook_names
from ..judge.extract import extract
from ..judge.grade import RunProbe, ask_for, draws, judge_module, probe
from ..judge.local import run_probe_locally
from .fakeclass import planted, replace_cell


def escapes(assignment: str, mistake: dict[str, Any], seeds: Iterable[int],
            run_probe: RunProbe = run_probe_locally) -> list[tuple[int, str]]:
    """(seed, test) for every seed at which a test that ``mistake`` must lose passed.

    Only the checks of the tests it must lose run, each with the random draws
    a grading at that seed makes (:func:`~autograder.judge.grade.draws`).
    """
    solution = course_root() / "solutions" / assignment / f"{notebook_names(assignment)[0]}.ipynb"
    nb = replace_cell(nbformat.read(solution, as_version=4), mistake["cell"], mistake["source"])
    extracted, checks = extract(assignment, nb), judge_module(assignment).CHECKS
    graded = []  # (seed, the seed's Ask, its verifies)
    for seed in seeds:
        ask = ask_for(extracted)
        graded.append((seed, ask, {t: checks[t](ask, draws(seed, assignment, t)) for t in mistake["loses"]}))
    response = probe(extracted, {"assignment": assignment, "calls": [c for _, a, _ in graded for c in a.calls]},
                     run_probe)
    replies, first, found = response.get("replies", {}), 0, []
    for seed, ask, verifies in graded:
        mine = range(first, first + len(ask.calls))
        ask.attach({**response, "replies": {i - first: replies.get(i, replies.get(str(i))) for i in mine}})
        first += len(ask.calls)
        for test, verify in verifies.items():
            try:
                verify()
            except Exception:  # noqa: BLE001, S112 - Failed, or a reply the judge cannot read: both score 0
                continue
            found.append((seed, test))
    return found


def sweep(assignments: list[str], seeds: int, first: int = 0) -> int:
    """Print one line per planted mistake; 1 when any escaped at some seed."""
    escaped = 0
    for assignment in assignments:
        for mistake in planted(assignment):
            name = f"{assignment} {mistake['name']}"
            if mistake.get("slow"):  # each seed would wait out the probe's time limit
                print(f"{name}: skipped (slow: caught by the probe's time limit, which the graded class covers)")
                continue
            found = escapes(assignment, mistake, range(first, first + seeds))
            if found:
                escaped += 1
                print(f"{name}: ESCAPED at {len({s for s, _ in found})} of {seeds} seeds, e.g. {found[:5]}: add a "
                      "fixed case to the judge's check that catches it (the draws alone do not)", flush=True)
            else:
                print(f"{name}: lost {', '.join(mistake['loses'])} at all {seeds} seeds", flush=True)
    return 1 if escaped else 0

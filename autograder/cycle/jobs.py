"""Grading as independent jobs, one per submission, and a merge that writes what they stored.

A job (:func:`run_job`) grades one collected submission: its learner code
runs only in sandboxes it starts, and it writes only files under
``autograded/<student>/<assignment>/`` (``result.json`` and the graded
notebook). Jobs share nothing they write, so they run in any order, on any
machine that sees the instructor folder, and a job run again over the same
submission stores the same scores. :func:`merge` then reads every stored result
into the gradebook, the log lines and the review CSV; running it twice changes
nothing. :func:`autograde` is the local run: plan, ``jobs`` worker processes,
merge. ``python -m autograder jobs`` lists the plan, ``job N`` runs line N of
it (a Slurm array task or a Kubernetes Indexed Job pod), ``merge`` merges
(autograder/README.md, "Many machines").
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

from .course import Course, resolve
from .result import Result
from .workers import NO_SANDBOX, _classmates, _settle, _stale, run_workers, screen, submissions


def plan(names: Iterable[str] | None = None, force: bool = False) -> list[tuple[str, str]]:
    """The (assignment, student) jobs still to run, in a stable order; registers assignments first.

    Submissions that cannot run (missing or unreadable notebooks) get no job (the merge scores them 0
    with the reason); already graded ones get none unless ``force`` or the submission is newer.
    """
    course = Course()
    todo: list[tuple[str, str]] = []
    for a in resolve(names):
        students = submissions(a)
        if not students:
            print(f"{a}: no submissions collected")
            continue
        if not course.registered(a) and not course.generate(a, into=course.workspace.generated):
            raise SystemExit(f"could not register {a} in the gradebook; see {course.logs / f'generate-{a}.log'}")
        unreadable = {s for s in students if screen(a, s)}
        for s in unreadable:  # a stale graded copy must not outlive a broken resubmission
            shutil.rmtree(course.workspace.graded(s, a), ignore_errors=True)
        todo += [(a, s) for s in students if s not in unreadable and (force or _stale(a, s))]
    return todo


def run_job(assignment: str, student: str) -> None:
    """Grade one submission and store its files (see :func:`autograder.cycle.submission.grade_one`)."""
    from .submission import grade_one

    grade_one(Course(), assignment, student, isolate=os.environ.get(NO_SANDBOX) != "1")


def merge(names: Iterable[str] | None = None, crashed: set[tuple[str, str]] | None = None) -> list[Result]:
    """Every stored result into the gradebook, log lines and review CSVs; one Result per student."""
    course = Course()
    results: list[Result] = []
    for a in resolve(names):
        students = submissions(a)
        if not students or not course.registered(a):
            continue
        unreadable = {s: p for s in students if (p := screen(a, s))}
        results += _settle(course, a, students, unreadable, crashed or set(), _classmates(a, students, unreadable))
    return results


def autograde(names: Iterable[str] | None = None, force: bool = False, jobs: int = 1) -> list[Result]:
    """Grade every collected submission of ``names`` (default: all) here, ``jobs`` at a time, then merge."""
    from ..sandbox.launch import sandbox_available

    if os.environ.get(NO_SANDBOX) != "1" and not sandbox_available():
        raise SystemExit("the grading sandbox (bubblewrap) does not work here: install it with `make bubblewrap`, "
                         "or grade without isolation with --no-sandbox (see autograder/README.md)")
    names = list(resolve(names))
    crashed = run_workers(plan(names, force), jobs)
    return merge([a for a in names if submissions(a)], crashed)


def job_lines(names: Iterable[str] | None = None, force: bool = False) -> list[str]:
    """The plan as "assignment student" lines, the numbering ``job N`` uses (instructor folder: see README)."""
    return [f"{a} {s}" for a, s in plan(names, force)]


__all__ = ["autograde", "job_lines", "merge", "plan", "run_job"]

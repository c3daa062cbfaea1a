"""Screening, grading workers and the log lines: what the grading jobs (``jobs.py``) are made of.

Each submission is graded by :func:`autograder.cycle.submission.grade_one` in a
worker process (``python -m autograder _worker``), ``jobs`` of them taking one
submission at a time from a shared queue. The learner's code runs only inside
sandboxes started by the worker; the worker itself (trusted) writes the
gradebook. Submissions already graded are skipped, so a run that was
interrupted resumes where it stopped.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import threading
import traceback
from typing import Any

import nbformat

from .. import REPO, notebook_names
from ..workspace import Workspace
from .collect import load_notes
from .course import Course, log
from .result import Result
from .submission import stored_result

NO_SANDBOX = "GPIPE_GRADE_NO_SANDBOX"  # set by --no-sandbox; the workers read it

def submissions(assignment: str) -> list[str]:
    """Students with a collected submission of ``assignment``."""
    root = Workspace.from_env().submitted
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / assignment).is_dir())


def screen(assignment: str, student: str) -> list[tuple[str, str]]:
    """Problems that keep a submission from being run at all: missing or unreadable notebooks."""
    problems = []
    folder = Workspace.from_env().submission(student, assignment)
    for nb in notebook_names(assignment):
        path = folder / f"{nb}.ipynb"
        if not path.exists():
            problems.append(("MISSING_NOTEBOOK", f"{nb}.ipynb not submitted"))
            continue
        try:
            schema_problem(nbformat.read(path, as_version=4))
        except Exception as exc:  # any unreadable file is the learner's problem, reported, never fatal
            reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            problems.append(("INVALID_NOTEBOOK", f"{nb}.ipynb is not a readable notebook ({reason})"))
    return problems


def schema_problem(notebook: Any) -> None:
    """Raise ValueError naming the first way ``notebook`` is not a notebook the grader can read.

    nbformat's own schema first (cell kinds, sources, outputs), then what nbformat leaves open and the grader
    reads: each cell's ``metadata.nbgrader`` must be a mapping whose ``grade_id`` is a short string.
    """
    if not isinstance(notebook.get("cells"), list):
        raise ValueError("it has no list of cells")
    try:
        nbformat.validate(notebook)
    except nbformat.ValidationError as exc:
        raise ValueError(f"it breaks the notebook format: {str(exc.message)[:120]}") from None
    for index, cell in enumerate(notebook.cells):
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta is None:
            continue
        if not isinstance(meta, dict):
            raise ValueError(f"cell #{index}: its nbgrader metadata is a {type(meta).__name__}, not a mapping "
                             "(restore the cell from the released notebook)")
        gid = meta.get("grade_id")
        if gid is not None and not (isinstance(gid, str) and 0 < len(gid) <= 200):
            raise ValueError(f"cell #{index}: its grade_id is not a short string")


def _classmates(assignment: str, students: list[str], unreadable: dict) -> dict[str, list[str]]:
    """The findings only the class review makes (a classmate's code copied), per student; never raises.

    Chosen by each finding's ``rule``, never by its text (a student id may hold any words). The rest of the
    review (holds, the engine, machinery) comes with each submission's own grading.
    """
    from ..review.run import CLASS_RULES, review_class

    flags: dict[str, list[str]] = {}
    for nb in notebook_names(assignment):
        paths = {s: Workspace.from_env().submission(s, assignment) / f"{nb}.ipynb"
                 for s in students if s not in unreadable}
        for student, found in review_class(assignment, paths, own=False).items():
            flags.setdefault(student, []).extend(f for f in found if f.rule in CLASS_RULES)
    return flags


def _stale(assignment: str, student: str) -> bool:
    """True unless a finished graded copy exists that is at least as new as the submission."""
    workspace = Workspace.from_env()
    graded = workspace.graded(student, assignment)
    if stored_result(assignment, student) is None or not all(
            (graded / f"{nb}.ipynb").exists() for nb in notebook_names(assignment)):
        return True
    new, old = (p / "timestamp.txt" for p in (workspace.submission(student, assignment), graded))
    return not old.exists() or (new.exists() and new.read_text().strip() != old.read_text().strip())


# A worker is `python -m autograder _worker`: it reads "assignment<TAB>student<TAB>upcoming" lines
# (upcoming: the assignment of the next submission in the queue, or empty) and
# answers each with a line starting with this token once that submission is graded. A worker that
# dies (a bug of the grader's) costs one submission, reported as GRADER_ERROR; the rest go on.
TOKEN = "@@autograder-done@@"


def run_workers(plan: list[tuple[str, str]], jobs: int) -> set[tuple[str, str]]:
    """Grade ``plan`` with ``jobs`` worker processes; returns the submissions whose worker died."""
    if not plan:
        return set()
    todo = list(reversed(plan))
    lock = threading.Lock()
    crashed: set[tuple[str, str]] = set()

    def drive() -> None:
        worker = None
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    task = todo.pop()
                    # with a core to spare, the worker starts the next submission's sandbox ahead (probe_runs.py)
                    upcoming = todo[-1][0] if todo and jobs < (os.cpu_count() or 1) else ""
                if worker is None or worker.poll() is not None:
                    worker = subprocess.Popen([sys.executable, "-m", "autograder", "_worker"], cwd=REPO,
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
                worker.stdin.write(f"{task[0]}\t{task[1]}\t{upcoming}\n")
                worker.stdin.flush()
                for line in worker.stdout:
                    if line.startswith(TOKEN):
                        break
                else:  # the worker died with this submission in hand
                    worker.wait()
                    with lock:
                        crashed.add(task)
                    log.error("the grading worker died while grading %s/%s; going on with the rest", *task)
        finally:
            if worker is not None and worker.poll() is None:
                worker.stdin.close()
                worker.wait()

    threads = [threading.Thread(target=drive) for _ in range(max(1, min(jobs, len(plan))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return crashed


def worker() -> None:
    """Grade submissions named on stdin, one at a time (see :func:`run_workers`)."""
    from .submission import grade_one

    course = Course()
    isolate = os.environ.get(NO_SANDBOX) != "1"
    for line in sys.stdin:
        assignment, student, upcoming = line.rstrip("\n").split("\t")
        logfile = course.logs / "autograde" / assignment / f"{student}.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        try:
            grade_one(course, assignment, student, isolate=isolate, upcoming=upcoming or None)
            logfile.write_text("graded\n")
        except Exception:  # the grader's own failure: reported for this submission, the rest go on
            logfile.write_text(traceback.format_exc())
            shutil.rmtree(course.workspace.graded(student, assignment), ignore_errors=True)
        print(f"{TOKEN} {assignment} {student}", flush=True)


def _record(course: Course, assignment: str, student: str, stored: dict[str, Any] | None) -> tuple[float, float]:
    """Write one stored result into the gradebook (0 where nothing was graded; 0 and a manual grade to give
    while held); returns (score, maximum). Writing the same result again changes nothing."""
    from nbgrader.utils import parse_utc

    stamp = Workspace.from_env().submission(student, assignment) / "timestamp.txt"
    scores = (stored or {}).get("judged") or {}
    held = bool((stored or {}).get("held"))
    with course.gradebook() as gb:
        gb.update_or_create_student(student)
        when = parse_utc(stamp.read_text().strip()) if stamp.exists() else None
        submission = gb.update_or_create_submission(assignment, student, timestamp=when)
        for nb in submission.notebooks:
            for grade in nb.grades:
                score = 0.0 if held or stored is None else float(scores.get(grade.name, 0.0))
                grade.auto_score, grade.manual_score, grade.needs_manual_grade = score, None, held
        gb.db.commit()
        submission = gb.find_submission(assignment, student)
        return submission.score, submission.max_score


def _settle(course: Course, assignment: str, students: list[str], unreadable: dict[str, list[tuple[str, str]]],
            crashed: set[tuple[str, str]], class_flags: dict[str, list[str]]) -> list[Result]:
    """Zeros where nothing could be graded, then each student's Result (the log line) from what was stored.

    Also writes the review CSV of the assignment (``instructor/review-<assignment>.csv``): one row per
    finding, ``kind`` "hold" (its points wait for the instructor: scored 0 until ``review`` accepts them)
    or "flag" (scored as judged; worth a look), with the reason.
    """
    from . import record, term

    notes, course_term = load_notes(), term.load()
    results = []
    review: list[list[str]] = []
    for student in students:
        result = Result(assignment, student)
        for code, detail in notes.get(f"{student}/{assignment}", []):
            result.add(code, detail)
        stored = None if student in unreadable else stored_result(assignment, student)
        graded_dir = course.workspace.graded(student, assignment)
        if stored is not None and not all((graded_dir / f"{nb}.ipynb").exists() for nb in notebook_names(assignment)):
            stored = None
        problems = unreadable.get(student, [])
        if student not in unreadable and stored is None:
            why = "died" if (assignment, student) in crashed else "failed"
            problems = [("GRADER_ERROR", f"the grading process {why} on this submission; see "
                         f"{course.logs / 'autograde' / assignment / (student + '.log')}")]
        for code, detail in problems:
            result.add(code, detail)
        if stored is not None:
            for code, detail in stored["problems"]:
                result.add(code, detail)
            result.seconds = stored.get("seconds")
            for flag in class_flags.get(student, []):
                result.add("FLAGGED", flag)
        result.score, result.max_score = _record(course, assignment, student, stored)
        record.finish(course, result, stored, course_term)  # the late policy, then the result record
        results.append(result)
        review += [[student, assignment, "hold" if code == "HELD" else "flag",
                    detail.removeprefix("flagged for review: ").removeprefix("held for review: ")]
                   for code, detail in result.problems if code in ("FLAGGED", "HELD")]
        print(result.line())
    (course.logs / f"grades-{assignment}.txt").write_text("".join(r.line() + "\n" for r in results))
    with course.workspace.review_csv(assignment).open("w", newline="") as fh:
        csv.writer(fh).writerows([["student", "assignment", "kind", "reason"], *review])
    return results

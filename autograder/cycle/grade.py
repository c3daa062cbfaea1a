"""autograde: screen, grade under limits in worker processes, one log line per student."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nbformat

from .. import REPO, course_root, instructor_dir, notebook_names
from .collect import load_notes
from .course import EXECUTION_EVENTS, Course, Result, log, resolve

# ---- autograde ----------------------------------------------------------------------------------

def submissions(assignment: str) -> list[str]:
    """Students with a collected submission of ``assignment``."""
    root = instructor_dir() / "submitted"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / assignment).is_dir())


def screen(assignment: str, student: str) -> list[tuple[str, str]]:
    """Problems that keep a submission from being run at all: missing or unreadable notebooks."""
    problems = []
    folder = instructor_dir() / "submitted" / student / assignment
    for nb in notebook_names(assignment):
        path = folder / f"{nb}.ipynb"
        if not path.exists():
            problems.append(("MISSING_NOTEBOOK", f"{nb}.ipynb not submitted"))
            continue
        try:
            notebook = nbformat.read(path, as_version=4)
            if not isinstance(notebook.get("cells"), list):
                raise ValueError("it has no list of cells")
        except Exception as exc:  # any unreadable file is the learner's problem, reported, never fatal
            reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            problems.append(("INVALID_NOTEBOOK", f"{nb}.ipynb is not a readable notebook ({reason})"))
    return problems


def autograde(names: Iterable[str] | None = None, force: bool = False, jobs: int = 1) -> list[Result]:
    """Grade every collected submission of ``names`` (default: all); returns one Result per student.

    Submissions that cannot run (missing or unreadable notebooks) are scored 0
    here; the rest are graded by ``jobs`` worker processes taking one
    submission at a time from a shared queue. Already graded submissions are
    skipped unless ``force`` or the submission is newer (nbgrader's rule).
    """
    course = Course()
    plan: list[tuple[str, str]] = []
    screened: dict[str, tuple[list[str], dict[str, list[tuple[str, str]]]]] = {}
    for a in resolve(names):
        students = submissions(a)
        if not students:
            print(f"{a}: no submissions collected")
            continue
        if not course.registered(a) and not course.generate(a, into=course.workspace / "generated"):
            raise SystemExit(f"could not register {a} in the gradebook; see {course.logs / f'generate-{a}.log'}")
        unreadable = {s: p for s in students if (p := screen(a, s))}
        for s in unreadable:  # a stale graded copy must not outlive a broken resubmission
            shutil.rmtree(course.workspace / "autograded" / s / a, ignore_errors=True)
        plan += [(a, s) for s in students if s not in unreadable and (force or _stale(a, s))]
        screened[a] = (students, unreadable)
    crashed = run_workers(plan, force, jobs)
    results = []
    for a, (students, unreadable) in screened.items():
        results += _settle(course, a, students, unreadable, crashed)
    return results


def _stale(assignment: str, student: str) -> bool:
    """True unless a graded copy exists that is at least as new as the submission (nbgrader's own rule)."""
    graded = instructor_dir() / "autograded" / student / assignment
    if not all((graded / f"{nb}.ipynb").exists() for nb in notebook_names(assignment)):
        return True
    from nbgrader.utils import parse_utc

    new, old = (p / "timestamp.txt" for p in (instructor_dir() / "submitted" / student / assignment, graded))
    if not (new.exists() and old.exists()):
        return False
    try:
        return parse_utc(new.read_text().strip()) > parse_utc(old.read_text().strip())
    except ValueError:  # an unreadable timestamp from the learner: let nbgrader decide
        return True


# A worker is `python -m autograder _worker`: it reads "assignment<TAB>student<TAB>force" lines and
# answers each with a line starting with this token once that submission is graded. A kernel that
# kills its parent takes down one worker, never the command; its submission is reported, the rest go on.
TOKEN = "@@autograder-done@@"


def run_workers(plan: list[tuple[str, str]], force: bool, jobs: int) -> set[tuple[str, str]]:
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
                if worker is None or worker.poll() is not None:
                    worker = subprocess.Popen([sys.executable, "-m", "autograder", "_worker"], cwd=REPO,
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
                worker.stdin.write(f"{task[0]}\t{task[1]}\t{int(force)}\n")
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
    from nbgrader.converters import Autograde

    course = Course()
    for line in sys.stdin:
        assignment, student, force = line.rstrip("\n").split("\t")
        course.run(f"autograde/{assignment}/{student}", Autograde, force=force == "1",
                   assignment_id=assignment, student_id=student)
        print(f"{TOKEN} {assignment} {student}", flush=True)


def _settle(course: Course, assignment: str, students: list[str], unreadable: dict[str, list[tuple[str, str]]],
            crashed: set[tuple[str, str]]) -> list[Result]:
    """Fix up the gradebook (zeros where nothing could run) and build each student's Result."""
    notes = load_notes()
    results = []
    for student in students:
        result = Result(assignment, student)
        for code, detail in notes.get(f"{student}/{assignment}", []):
            result.add(code, detail)
        graded_dir = course.workspace / "autograded" / student / assignment
        problems = unreadable.get(student, [])
        if (assignment, student) in crashed:
            problems = [("GRADER_ERROR", "the grading process died while running this notebook "
                         "(did it kill its parent process?); see "
                         f"{course.logs / 'autograde' / assignment / (student + '.log')}")]
            shutil.rmtree(graded_dir, ignore_errors=True)
        elif student not in unreadable and not all(
                (graded_dir / f"{nb}.ipynb").exists() for nb in notebook_names(assignment)):
            problems = [("GRADER_ERROR", "nbgrader could not grade this submission; see "
                         f"{course.logs / 'autograde' / assignment / (student + '.log')}")]
            shutil.rmtree(graded_dir, ignore_errors=True)
        for code, detail in problems:
            result.add(code, detail)
        with course.gradebook() as gb:
            gb.update_or_create_student(student)
            submission = gb.update_or_create_submission(assignment, student)
            for nb in submission.notebooks:
                if problems:
                    present: set[str] = set()
                else:
                    present, findings, seconds = _inspect(nb.notebook, graded_dir / f"{nb.name}.ipynb",
                                                 course.workspace / "submitted" / student / assignment
                                                 / f"{nb.name}.ipynb")
                    for finding in findings:
                        result.add(*finding)
                    result.seconds = (result.seconds or 0) + (seconds or 0)
                for grade in nb.grades:
                    if grade.name not in present and grade.auto_score is None and grade.manual_score is None:
                        grade.auto_score = 0.0
                        grade.needs_manual_grade = False
            gb.db.commit()
            submission = gb.find_submission(assignment, student)
            result.score, result.max_score = submission.score, submission.max_score
        results.append(result)
        print(result.line())
    (course.logs / f"grades-{assignment}.txt").write_text("".join(r.line() + "\n" for r in results))
    return results


def _inspect(master: Any, graded: Path, submitted: Path) -> tuple[set[str], list[tuple[str, str]], float | None]:
    """Compare a submission with the gradebook's master copy and read what happened in the graded run.

    Returns the grade ids present in the submission, the findings for the log line and the run's seconds.
    """
    from nbgrader.utils import compute_checksum, is_locked

    findings: list[tuple[str, str]] = []
    sub = nbformat.read(submitted, as_version=4)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in sub.cells]
    present = {i for i in ids if i}
    by_id = {i: c for i, c in zip(ids, sub.cells) if i}
    tests = [gc.name for gc in master.grade_cells]
    deleted = [t for t in tests if t not in present]
    if deleted:
        findings.append(("TEST_CELL_DELETED", ", ".join(deleted) + " (scored 0)"))
    edited = [i for i, c in by_id.items() if is_locked(c) and "checksum" in c.metadata.nbgrader
              and compute_checksum(c) != c.metadata.nbgrader["checksum"]]
    if edited:
        findings.append(("LOCKED_CELL_EDITED", ", ".join(edited) + " (the original was graded)"))
    source = nbformat.read(course_root() / "solutions" / master.assignment.name / f"{master.name}.ipynb", 4)
    expected = [i for c in source.cells if (i := c.metadata.get("nbgrader", {}).get("grade_id")) in set(tests)]
    if [i for i in ids if i in set(tests)] != [i for i in expected if i in present]:
        findings.append(("TEST_CELLS_REORDERED", "(graded in the submitted order)"))
    nb = nbformat.read(graded, as_version=4)
    seconds = nb.metadata.get("autograder", {}).get("seconds")
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        name = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell #{index}"
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        events = [o for o in errors if o.get("ename") in EXECUTION_EVENTS]
        for o in events:
            findings.append((EXECUTION_EVENTS[o["ename"]], f"in {name}: {o.get('evalue', '')}"))
        if any(o.get("ename") == "MemoryError" or "can't allocate memory" in str(o.get("evalue", ""))
               for o in errors):
            findings.append(("MEMORY", f"in {name}: an allocation hit the memory limit"))
        grade = cell.metadata.get("nbgrader", {})
        if grade.get("grade") and not grade.get("solution") and name in present:
            real = [o for o in errors if o.get("ename") not in EXECUTION_EVENTS]
            stderr = any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in cell.outputs)
            if real:
                first = real[0]
                message = str(first.get("evalue", "")).strip().splitlines()
                findings.append(("FAILED", f"{name} ({first.get('ename')}: {message[0][:140] if message else ''})"))
            elif events:
                findings.append(("FAILED", f"{name} (not completed)"))
            elif stderr:
                findings.append(("FAILED", f"{name} (wrote to stderr, which nbgrader scores 0)"))
    return present, findings, seconds

"""Grade one collected submission: clean it, score it with the judge, write the results.

Runs in a grading worker (trusted). For each notebook of the submission:

1. the collected copy is *cleaned*: cells claiming to be graded that the
   course's source notebook does not have lose their nbgrader metadata (log:
   UNKNOWN_CELL_DROPPED), locked cells are compared with the source the
   gradebook holds, never with the submission's own metadata (LOCKED_CELL_EDITED), deleted test cells are noted;
2. :func:`autograder.judge.grade_submission` scores every graded cell from a
   sandboxed probe of the learner's definitions, on a seed drawn now;
3. the feedback notebook is the submission with the outputs the learner saved
   (plain kinds only, cut to the limits: :func:`autograder.sandbox.execute.as_submitted`);
   with ``GPIPE_GRADE_RUN_NOTEBOOKS=1`` (``--run-notebooks``) it is run again in
   a sandbox instead (:func:`autograder.sandbox.execute.execute`), which costs a second
   sandbox and a Jupyter kernel per submission and gives no score;
4. only then, with every sandbox of the submission ended, a ``result.json``
   (scores, findings, seed, timings) and the graded notebook (with the judge's
   messages under each graded cell, never a hidden test's source, seed or
   expected value) are written, the notebook last, so an interrupted run leaves
   either a finished submission or a stale one. The job writes nothing else:
   the merge (:func:`autograder.cycle.jobs.merge`) fills the gradebook.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat

from .. import notebook_names
from ..judge.facts import limits_for
from ..sandbox.execute import as_submitted, execute
from ..workspace import Workspace
from .course import Course
from .probe_runs import package_copy, probe_runner

RESULT = "result.json"
RUN_NOTEBOOKS = "GPIPE_GRADE_RUN_NOTEBOOKS"  # "1": run each notebook again in a sandbox for its feedback


def grade_one(course: Course, assignment: str, student: str, isolate: bool = True,
              upcoming: str | None = None) -> None:
    """Grade ``student``'s collected ``assignment`` and store everything (see the module docstring).

    ``upcoming``: the assignment of the submission this worker grades next, if known, whose probe sandbox
    then starts while this one answers (never with ``--run-notebooks``, whose sandboxes share the slots).
    """
    from ..judge import grade_submission
    from ..review.run import review_submission

    limits = limits_for(assignment)
    submitted = Workspace.from_env().submission(student, assignment)
    problems: list[tuple[str, str]] = []
    graded: dict[str, Any] = {}
    scores: dict[str, float] = {}
    messages: dict[str, list[str]] = {}
    holds: list[str] = []
    timings: dict[str, float] = {}
    seed = secrets.randbits(32)
    rerun = os.environ.get(RUN_NOTEBOOKS) == "1"
    with course.gradebook() as gb, tempfile.TemporaryDirectory(prefix="gpipe-grade-") as tmp:
        seconds = 0.0
        for nb_name in notebook_names(assignment):
            clock = time.perf_counter()
            master = gb.find_notebook(nb_name, assignment)
            notebook, findings, present = clean(nbformat.read(submitted / f"{nb_name}.ipynb", as_version=4), master)
            problems += findings
            path = Path(tmp) / f"{nb_name}.ipynb"
            nbformat.write(notebook, path)
            _add(timings, "clean", clock)
            clock = time.perf_counter()
            ran = execute(path, limits, package_copy(), isolate=isolate) if rerun else as_submitted(path, limits)
            _add(timings, "notebook run" if rerun else "outputs", clock)
            problems += ran.events
            runner = probe_runner(assignment, limits, isolate, ahead=None if rerun else upcoming)
            judged = grade_submission(assignment, path, runner, seed, student=student, review=review_submission)
            for phase, took in judged.timings.items():
                timings[phase] = timings.get(phase, 0.0) + took
            seconds += ran.seconds if ran.seconds is not None else judged.timings.get("probe", 0.0)
            problems += [("FLAGGED", flag) for flag in judged.flags]
            holds += judged.holds
            for grade_id in judged.scores:
                if grade_id not in present and grade_id in {g.name for g in master.grade_cells}:
                    judged.scores[grade_id] = 0.0
                    judged.messages[grade_id] = ["this test cell was deleted from the notebook (scored 0)"]
            failed = [f"{g} ({m[0][:140]})" if m else g for g, m in judged.messages.items()
                      if judged.scores.get(g, 0) < judged.max_scores.get(g, 0)]
            problems += [("FAILED", f) for f in failed]
            scores.update(judged.scores)
            messages.update(judged.messages)
            graded[nb_name] = annotate(ran.notebook, judged.scores, judged.max_scores, judged.messages,
                                       held=bool(holds))
    problems += [("HELD", h) for h in holds]
    clock = time.perf_counter()
    store(course, assignment, student, scores, graded, problems, seconds, seed, held=bool(holds), timings=timings,
          messages=messages)
    _add(timings, "store", clock)


def _add(timings: dict[str, float], phase: str, since: float) -> None:
    timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - since


def clean(nb: Any, master: Any) -> tuple[Any, list[tuple[str, str]], set[str]]:
    """The submission with unknown graded cells demoted; findings for the log line; the grade ids present."""
    known = {c.name: c for c in master.source_cells}
    tests = [g.name for g in master.grade_cells]
    points = {g.name: float(g.max_score) for g in master.grade_cells}
    solutions = {c.name for c in master.solution_cells}
    findings: list[tuple[str, str]] = []
    dropped, edited, present = [], [], set()
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if not meta:
            continue
        grade_id = meta.get("grade_id")
        if grade_id not in known or grade_id in present:
            dropped.append(str(grade_id)[:40])
            del cell.metadata["nbgrader"]
            continue
        present.add(grade_id)
        source = known[grade_id]
        # the cell's role is the gradebook's, whatever flags the submission claims
        cell.metadata["nbgrader"] = {"grade_id": grade_id, "grade": grade_id in points,
                                     "solution": grade_id in solutions, "locked": bool(source.locked),
                                     "points": points.get(grade_id, 0.0), "schema_version": 3}
        if source.locked and (cell.source.strip() != released(source.source or "")
                              or cell.cell_type != source.cell_type):
            edited.append(grade_id)
    if dropped:
        findings.append(("UNKNOWN_CELL_DROPPED", ", ".join(dropped) + " (not cells of this assignment)"))
    if edited:
        findings.append(("LOCKED_CELL_EDITED", ", ".join(edited) + " (graded by the judge all the same)"))
    deleted = [t for t in tests if t not in present]
    if deleted:
        findings.append(("TEST_CELL_DELETED", ", ".join(deleted) + " (scored 0)"))
    order = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
             if c.metadata.get("nbgrader", {}).get("grade_id") in set(tests)]
    if order != [t for t in tests if t in present]:
        findings.append(("TEST_CELLS_REORDERED", "(graded all the same)"))
    return nb, findings, present


def released(source: str) -> str:
    """A source cell as learners receive it: without its ``### BEGIN/END HIDDEN TESTS`` block (nbgrader's rule)."""
    kept, hidden = [], False
    for line in source.splitlines():
        if line.strip() == "### BEGIN HIDDEN TESTS":
            hidden = True
        elif line.strip() == "### END HIDDEN TESTS":
            hidden = False
        elif not hidden:
            kept.append(line)
    return "\n".join(kept).strip()


def annotate(nb: Any, scores: dict[str, float], tops: dict[str, float], messages: dict[str, list[str]],
             held: bool = False) -> Any:
    """Put the judge's verdict under each graded cell: the test's name, the points and the failure messages.

    A held submission's verdicts say that its points wait for the instructor's review.
    """
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id not in tops or cell.cell_type != "code":
            continue
        got, top = scores.get(grade_id, 0.0), tops[grade_id]
        lines = [f"Grader: {grade_id}: {got:g} / {top:g} points"
                 + (" (held: counted only after the instructor's review)" if held else "")]
        lines += [f"  - {m}" for m in messages.get(grade_id, [])]
        cell.setdefault("outputs", []).append(
            nbformat.v4.new_output("stream", name="stdout" if got >= top else "stderr", text="\n".join(lines) + "\n"))
    return nb


def store(course: Course, assignment: str, student: str, scores: dict[str, float], graded: dict[str, Any],
          problems: list[tuple[str, str]], seconds: float, seed: int, held: bool = False,
          timings: dict[str, float] | None = None, messages: dict[str, list[str]] | None = None) -> None:
    """result.json, then the graded notebooks (last: they mark the job done). Files only, no gradebook.

    A grading job writes nothing shared: the merge (``cycle.jobs.merge``) puts every stored result into
    the gradebook, so jobs can run anywhere and in any order, and a job run twice leaves the same files
    (but for its draws' seed and timings). A held submission's scores wait in ``judged``; the merge
    gives it 0 and marks it for a manual grade.
    """
    submitted = course.workspace.submission(student, assignment)
    stamp = submitted / "timestamp.txt"
    out = course.workspace.graded(student, assignment)
    out.mkdir(parents=True, exist_ok=True)
    for name in notebook_names(assignment):
        (out / f"{name}.ipynb").unlink(missing_ok=True)
    if stamp.exists():
        shutil.copyfile(stamp, out / "timestamp.txt")
    from .record import environment

    (out / RESULT).write_text(json.dumps({"problems": problems, "seconds": round(seconds, 1), "seed": seed,
                                          "held": held, "judged": scores, "messages": messages or {},
                                          "timings": {k: round(v, 3) for k, v in (timings or {}).items()},
                                          "environment": environment()}))
    for name, nb in graded.items():
        partial = out / f".{name}.ipynb.part"
        nbformat.write(nb, partial)
        partial.replace(out / f"{name}.ipynb")


def stored_result(assignment: str, student: str) -> dict[str, Any] | None:
    path = Workspace.from_env().graded(student, assignment) / RESULT
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

"""export: the grades as a CSV, a view of the result records (generic, or Canvas's gradebook import).

The result records (``record.py``) hold each submission's final score with its
late penalty; the gradebook adds who was expected and did not hand in. The
generic CSV also carries each learner's answer to the notebooks' closing
question (``effort.py``), and the command prints each assignment's median, the
figure its notebook header should state next term.
"""

from __future__ import annotations

import csv
from pathlib import Path

from . import effort, record
from .course import Course


def export(path: Path, fmt: str = "generic", roster: Path | None = None) -> Path:
    """Write the grades, a view of the result records: the generic CSV, or Canvas's gradebook import.

    Generic: one row per student and assignment (``score`` is the final score: raw less the late penalty).
    Canvas (``fmt="canvas"``): see :func:`autograder.cycle.lms.write_canvas`; needs the roster.
    """
    from nbgrader.api import MissingEntry

    from . import lms
    from . import term as terms

    course = Course()
    records = record.every()
    rows, tops, students = [], {}, []
    with course.gradebook() as gb:
        names = [a.name for a in gb.assignments]
        tops = {a: float(gb.find_assignment(a).max_score) for a in names}
        students = sorted(s.id for s in gb.students)
        for student in students:
            for a in names:
                found = records.get((a, student))
                if found is not None:
                    rows.append([student, a, found["final"], found["max"], "yes",
                                 "yes" if found["status"] == "held" else "no", found["raw"],
                                 found["late"]["penalty"], found["late"]["hours_late"]])
                    continue
                try:
                    sub = gb.find_submission(a, student)
                except MissingEntry:
                    rows.append([student, a, 0.0, tops[a], "no", "no", 0.0, 0.0, 0.0])
                    continue
                rows.append([student, a, sub.score, sub.max_score, "yes",
                             "yes" if sub.needs_manual_grade else "no", sub.score, 0.0, 0.0])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "canvas":
        term = terms.load()
        roster = roster or (term.roster if term else None)
        if roster is None:
            raise SystemExit("export --format canvas needs the roster (Canvas user ids, SIS ids, sections): "
                             "--roster roster.csv, or roster = \"roster.csv\" in the course file")
        people = list(lms.read_roster(roster).values())
        listed = {p.student for p in people}
        for student in sorted(set(students) - listed):
            print(f"not exported: {student} has grades but is not in the roster {roster}: add a row for them")
        columns = {a: (term.canvas.get(a, a) if term else a) for a in names}
        finals = {(r[0], r[1]): float(r[2]) for r in rows if r[4] == "yes"}
        count = lms.write_canvas(path, people, columns, tops, finals)
        print(f"wrote {count} students x {len(names)} assignments for Canvas's gradebook import to {path}")
        return path
    if fmt != "generic":
        raise SystemExit(f"export --format {fmt!r}: use generic or canvas")
    spent = {(r[0], r[1]): effort.reported(r[1], r[0]) for r in rows if r[4] == "yes"}  # submitted only
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student_id", "assignment", "score", "max_score", "submitted", "needs_manual_grade",
                         "raw_score", "late_penalty", "hours_late", "hours_spent"])
        writer.writerows(r + [_blank(spent.get((r[0], r[1])))] for r in rows)
    print(f"wrote {len(rows)} rows to {path}")
    for a in names:  # what the notebooks' time estimates should say next term (cycle/effort.py)
        print(effort.summary(a, [h for (_, b), h in spent.items() if b == a]))
    return path


def _blank(value: float | None) -> object:
    return "" if value is None else value

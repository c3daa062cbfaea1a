"""feedback and export: HTML per student and a CSV from the gradebook.

Feedback pages show the learner's own executed notebook (cut and reduced to
plain outputs by :mod:`autograder.execute`) with the judge's verdict under
each graded cell: the test's name, the points and the failure messages, never
a hidden test's source, seed or expected values. Learner-written HTML in
markdown cells is sanitised, so a page is safe for the instructor to open.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Iterable
from pathlib import Path

from .. import notebook_names
from .course import Course, resolve
from .grade import screen, submissions


def feedback(names: Iterable[str] | None = None) -> list[Path]:
    """HTML feedback per student (nbgrader's generate_feedback); a short page where nothing could run."""
    from nbgrader.converters import GenerateFeedback

    course = Course()
    written = []
    for a in resolve(names):
        students = submissions(a)
        if not students:
            print(f"{a}: no submissions, no feedback")
            continue
        graded = [s for s in students if all((course.workspace / "autograded" / s / a / f"{nb}.ipynb").exists()
                                             for nb in notebook_names(a))]
        if graded:
            course.config.HTMLExporter.template_name = "feedback"
            course.config.HTMLExporter.sanitize_html = True
            course.run(f"feedback-{a}", GenerateFeedback, assignment_id=a, student_id="*")
        with course.gradebook() as gb:
            top = gb.find_assignment(a).max_score
        for s in students:
            folder = course.workspace / "feedback" / s / a
            if s not in graded:
                folder.mkdir(parents=True, exist_ok=True)
                problems = screen(a, s) or [("GRADER_ERROR", "the notebook could not be graded")]
                for nb in notebook_names(a):
                    (folder / f"{nb}.html").write_text(_unreadable_page(a, s, top, problems))
            written += sorted(folder.glob("*.html"))
        print(f"{a}: feedback for {len(students)} student(s) in {course.workspace / 'feedback'}")
    return written


def _unreadable_page(assignment: str, student: str, top: float, problems: list[tuple[str, str]]) -> str:
    items = "".join(f"<li>{html.escape(code)}: {html.escape(detail)}</li>" for code, detail in problems)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(assignment)}</title></head>"
            f"<body><h1>{html.escape(assignment)}: feedback for {html.escape(student)}</h1>"
            f"<p>Score: 0.0 / {top:.1f}. Your submission could not be run:</p><ul>{items}</ul>"
            "<p>Submit the notebook file itself (File &gt; Save, then upload the .ipynb) and ask for a regrade.</p>"
            "</body></html>")


def export(path: Path) -> Path:
    """Write one row per student and assignment from the gradebook to a CSV file."""
    from nbgrader.api import MissingEntry

    course = Course()
    rows = []
    with course.gradebook() as gb:
        names = [a.name for a in gb.assignments]
        for student in sorted(s.id for s in gb.students):
            for a in names:
                try:
                    sub = gb.find_submission(a, student)
                except MissingEntry:
                    rows.append([student, a, 0.0, gb.find_assignment(a).max_score, "no", "no"])
                    continue
                rows.append([student, a, sub.score, sub.max_score, "yes", "yes" if sub.needs_manual_grade else "no"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student_id", "assignment", "score", "max_score", "submitted", "needs_manual_grade"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {path}")
    return path

"""feedback: one HTML page per student and notebook, sanitised on its way to disk (the CSV is ``export.py``).

Feedback pages show the learner's notebook with its outputs (plain kinds only,
cut to the output limits by the grader) and the judge's verdict under each
graded cell: the test's name, the points and the failure messages, never
a hidden test's source, seed or expected values (``result.json``, which holds
the seed, stays in ``autograded/``).

The page is nbgrader's feedback template filled from the gradebook, as
``nbgrader generate_feedback`` would make it, but rendered here
(:func:`feedback_page`) so that every page passes through one sanitiser
(:mod:`autograder.cycle.safe_html`) on its way to disk: nbgrader's template
renders learner markdown and metadata without cleaning them. One exporter
serves every page of a run, and it skips nbconvert's BeautifulSoup pass (alt
texts and tab stops the sanitised page does without), which took longer than
the rest of the rendering; sanitising a page costs about a fifth of rendering it.
"""

from __future__ import annotations

import copy
import html
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .. import notebook_names
from . import record, safe_html
from .course import Course, resolve
from .workers import screen, submissions

log = logging.getLogger("autograder")
FIELDS = {"grade_id": str, "grade": bool, "solution": bool, "task": bool}  # what the template reads of a cell's own


@dataclass(frozen=True)
class Grades:
    """What the gradebook says of one submitted notebook (nbgrader's GetGrades, in one gradebook session)."""

    score: float
    max_score: float
    late_penalty: float = 0.0
    cells: dict[str, tuple[float, float]] = field(default_factory=dict)  # grade_id -> (score, points)
    comments: dict[str, str] = field(default_factory=dict)  # grade_id -> the grader's comment
    summary: str = ""  # raw score, late penalty and final score, shown above the notebook (from the record)


def feedback(names: Iterable[str] | None = None, students: Iterable[str] | None = None) -> list[Path]:
    """HTML feedback per student (only ``students``, if given), sanitised (:func:`feedback_page`); a short page
    where nothing could run. The scores shown are the result record's (``record.py``)."""
    course = Course()
    written = []
    only = set(students) if students is not None else None
    for a in resolve(names):
        students = [s for s in submissions(a) if only is None or s in only]
        if not students:
            print(f"{a}: no submissions, no feedback")
            continue
        graded = [s for s in students if all((course.workspace.graded(s, a) / f"{nb}.ipynb").exists()
                                             for nb in notebook_names(a))]
        with course.gradebook() as gb:
            top = gb.find_assignment(a).max_score
            grades = {s: found for s in graded if (found := _grades(gb, a, s)) is not None}
        for s in students:
            folder = course.workspace.feedback_of(s, a)
            shutil.rmtree(folder, ignore_errors=True)  # as nbgrader's --force: nothing stale stays
            folder.mkdir(parents=True)
            source = course.workspace.graded(s, a)
            for nb, text in _pages(source, a, s, grades.get(s), top).items():
                (folder / f"{nb}.html").write_text(text, encoding="utf-8")
            if (source / "timestamp.txt").exists():  # nbgrader's release_feedback reads it
                shutil.copyfile(source / "timestamp.txt", folder / "timestamp.txt")
            for path in folder.iterdir():
                os.chmod(path, 0o644)
            written += sorted(folder.glob("*.html"))
        print(f"{a}: feedback for {len(students)} student(s) in {course.workspace.feedback}")
    return written


def _pages(source: Path, assignment: str, student: str, grades: dict[str, Grades] | None,
           top: float) -> dict[str, str]:
    """Each notebook's page; a short page saying why where the notebook could not be graded or rendered."""
    names = notebook_names(assignment)
    if grades is None:
        problems = screen(assignment, student) or [("GRADER_ERROR", "the notebook could not be graded")]
        return {nb: _unreadable_page(assignment, student, 0.0, top, problems) for nb in names}
    try:
        return {nb: feedback_page(nbformat.read(source / f"{nb}.ipynb", as_version=4), nb, grades[nb])
                for nb in names}
    except Exception as exc:  # one page that cannot be rendered must not cost the rest of the class theirs
        log.error("feedback for %s on %s could not be rendered (%r): rerun `python -m autograder feedback %s` "
                  "after fixing the notebook in %s", student, assignment, exc, assignment, source)
        score = sum(g.score for g in grades.values())
        problem = [("GRADER_ERROR", f"the feedback page could not be made ({type(exc).__name__})")]
        return {nb: _unreadable_page(assignment, student, score, top, problem) for nb in names}


def _grades(gb: Any, assignment: str, student: str) -> dict[str, Grades] | None:
    """Each notebook's grades, or None (logged) where the gradebook has no such submission yet."""
    from nbgrader.api import MissingEntry

    grades = {}
    for name in notebook_names(assignment):
        try:
            nb = gb.find_submission_notebook(name, assignment, student)
        except MissingEntry:
            log.error("%s on %s is graded but not in the gradebook: run `python -m autograder merge`, then "
                      "`python -m autograder feedback %s`", student, assignment, assignment)
            return None
        penalty = float(nb.late_submission_penalty or 0.0)
        cells = {g.name: (float(g.score), float(g.max_score)) for g in nb.grades}
        summary = ""
        found = record.read(assignment, student)
        if found is not None:  # the record is what every view shows
            cells = {gid: (c["points"], c["max"]) for gid, c in found["checks"].items() if gid in cells}
            penalty = found["late"]["penalty"] if name == notebook_names(assignment)[0] else 0.0
            summary = summary_text(found)
        grades[name] = Grades(score=sum(v for v, _ in cells.values()) - penalty, max_score=float(nb.max_score),
                              late_penalty=penalty, cells=cells, summary=summary,
                              comments={c.name: c.comment for c in nb.comments if c.comment})
    return grades


def summary_text(found: dict[str, Any]) -> str:
    """The record's score line for a learner: raw, late penalty and final, and why."""
    late = found["late"]
    text = f"**Score: {found['final']:g} / {found['max']:g}.** Raw score {found['raw']:g}"
    text += f", late penalty {late['penalty']:g}" if late["penalty"] else ", no late penalty"
    text += f", final score {found['final']:g}."
    if late["reason"]:
        text += f" Handed in {late['reason']} (due {late['due']}; policy: {late['policy']})."
    return text


def feedback_page(nb: Any, name: str, grades: Grades) -> str:
    """One graded notebook as a sanitised feedback page (what :func:`feedback` writes for each notebook)."""
    return safe_html.page(render(nb, name, grades), name)


def render(nb: Any, name: str, grades: Grades) -> str:
    """The page nbgrader's feedback template makes of ``nb``: :func:`feedback_page` is this, sanitised.

    Each piece of learner HTML is cleaned where the template puts it
    (markdown, HTML outputs, raw cells: so an unclosed tag in one cell cannot
    swallow the rest of the page and the verdicts with it), scripts and
    widgets are not rendered, the notebook's own metadata is dropped (the
    page shows none of it) and each cell keeps only the nbgrader fields the
    template reads, typed and escaped, with the score, points and comment
    from ``grades``. The template itself still prints some of them unescaped,
    which is why only the whole page, cleaned again, is safe.
    """
    nb = copy.deepcopy(nb)
    nb.metadata = nbformat.NotebookNode({"language_info": {"name": "python"}})
    if grades.summary:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(grades.summary))
    for cell in nb.cells:
        own = cell.get("metadata", {}).get("nbgrader")
        meta: dict[str, Any] = {}
        if isinstance(own, dict):
            meta = {k: kind(own[k]) for k, kind in FIELDS.items() if isinstance(own.get(k), (str, bool, int))}
            gid = meta.get("grade_id", "")
            meta["grade_id"] = html.escape(gid)
            if meta.get("grade") or meta.get("task"):
                meta["score"], meta["points"] = grades.cells.get(gid, (0.0, 0.0))
            if meta.get("solution") or meta.get("task"):
                meta["comment"] = grades.comments.get(gid)
        cell.metadata = nbformat.NotebookNode({"nbgrader": meta} if meta else {})
    resources = {"nbgrader": {"notebook": name, "score": grades.score, "max_score": grades.max_score,
                              "late_penalty": grades.late_penalty}, "unique_key": name}
    document, _ = _exporter().from_notebook_node(nb, resources=resources)
    return document


_EXPORTER: Any = None


def _exporter() -> Any:
    """nbgrader's feedback template on one HTML exporter, made once per process (template compilation is slow)."""
    global _EXPORTER
    if _EXPORTER is None:
        import nbgrader.converters
        from jinja2 import pass_context
        from nbconvert.exporters import HTMLExporter, TemplateExporter
        from nbconvert.filters.highlight import Highlight2HTML
        from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
        from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor

        class FeedbackExporter(HTMLExporter):
            def from_notebook_node(self, nb: Any, resources: Any = None, **kw: Any) -> tuple[str, dict[str, Any]]:
                # HTMLExporter.from_notebook_node less its BeautifulSoup pass and with a fixed lexer
                self.register_filter("highlight_code", Highlight2HTML(pygments_lexer="ipython3", parent=self))
                resources = self._init_resources(resources)
                self.register_filter("filter_data_type", WidgetsDataTypeFilter(
                    notebook_metadata=self._nb_metadata, parent=self, resources=resources))
                return TemplateExporter.from_notebook_node(self, nb, resources, **kw)

            @pass_context
            def markdown2html(self, context: Any, source: str) -> str:
                return safe_html.clean(super().markdown2html(context, source))

        package = Path(nbgrader.converters.__file__).resolve().parents[1]
        exporter = FeedbackExporter(template_name="feedback", embed_images=False, sanitize_html=True,
                                    extra_template_basedirs=[str(package / "server_extensions/formgrader/templates")],
                                    extra_template_paths=[str(package / "server_extensions/formgrader/static/"
                                                              "node_modules/bootstrap/dist/css")])
        exporter.register_filter("clean_html", safe_html.clean)  # what the template calls on HTML outputs, raw cells
        exporter.register_preprocessor(CSSHTMLHeaderPreprocessor, enabled=True)
        _EXPORTER = exporter
    return _EXPORTER


def _unreadable_page(assignment: str, student: str, score: float, top: float,
                     problems: list[tuple[str, str]]) -> str:
    items = "".join(f"<li>{html.escape(code)}: {html.escape(detail)}</li>" for code, detail in problems)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(assignment)}</title></head>"
            f"<body><h1>{html.escape(assignment)}: feedback for {html.escape(student)}</h1>"
            f"<p>Score: {score:.1f} / {top:.1f}. Your submission could not be run:</p><ul>{items}</ul>"
            "<p>Submit the notebook file itself (File &gt; Save, then upload the .ipynb) and ask for a regrade.</p>"
            "</body></html>")

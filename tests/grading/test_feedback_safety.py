"""A feedback page built from a hostile notebook runs none of its scripts in a real browser.

The instructor opens every learner's feedback page, so a script that ran there
would run with the instructor's browser (autograder/README.md, threat model,
"Reading the hidden checks from feedback"). The notebook below carries the
usual ways of getting a script into HTML, in every place a learner controls:
markdown cells, raw cells, cell attachments, outputs of every rich kind, cell
and notebook metadata. Each payload tries to set ``top.pwned``, change the
title and call ``alert``. The page is rendered by the function ``feedback()``
writes every page with, opened in Chromium (Debian's, as the book's tests
use), every link is clicked and the mouse crosses the page; nothing may run,
no request may go to a ``javascript:`` or ``data:`` URL, and the judge's
verdict must still be there to read. The same notebook rendered as nbgrader's
own feedback converter renders it does run a payload: the test can tell.
"""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from autograder.cycle import safe_html
from autograder.cycle.publish import Grades, feedback_page

pytestmark = pytest.mark.browser

P = "top.pwned=1;top.document.title='pwned';alert(1)"  # what every payload tries to run
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
SVG = f"<svg xmlns='http://www.w3.org/2000/svg' onload=\"{P}\"><script>{P}</script></svg>"
VERDICT = "Grader: test_x: 2 / 3 points"
TITLE = "hostile"

MARKDOWN = [
    f"# Payloads\n<script>{P}</script>",
    f'<img src=x onerror="{P}"> <img src="data:image/svg+xml;base64,{base64.b64encode(SVG.encode()).decode()}">',
    f'<a href="javascript:{P}">a js link</a> <a href=" JaVa&#x09;ScRiPt:{P}">a hidden js link</a>',
    f'<a href="vbscript:msgbox(1)">vb</a> <a href="data:text/html,<script>{P}</script>">a data link</a>',
    f"[a markdown js link](javascript:{P}) [another](JaVaScRiPt:{P}) ![an image](javascript:{P})",
    f'{SVG} <svg><a xlink:href="javascript:{P}"><text y="20">svg link</text></a></svg>',
    f'<iframe srcdoc="<script>{P}</script>"></iframe> <iframe src="javascript:{P}"></iframe>',
    f'<math><mtext><table><mglyph><style><img src=x onerror="{P}">',
    f"<style>@import 'javascript:{P}'; body {{ background: url(\"javascript:{P}\") }}</style>",
    f'<noscript><p title="</noscript><img src=x onerror={P}>"></noscript>',
    f'<meta http-equiv="refresh" content="0;url=javascript:{P}"><base href="javascript:{P}//">',
    f'<form action="javascript:{P}"><button>send</button></form> <object data="javascript:{P}"></object>'
    f'<embed src="data:text/html,<script>{P}</script>">',
    f'<details open ontoggle="{P}"><summary>more</summary></details>'
    f'<div onmouseover="{P}" style="position:fixed;left:0;top:0;width:100%;height:100%">cover</div>',
    f'<a id="pwned" name="pwned">clobber</a> <!-- <img src=x onerror="{P}"> --> $\\href{{javascript:{P}}}{{x}}$',
    "![attached svg](attachment:evil.svg) ![attached png](attachment:dot.png)",
]


def hostile_notebook() -> nbformat.NotebookNode:
    cells = [new_markdown_cell(m) for m in MARKDOWN]
    cells[-1].attachments = {"evil.svg": {"image/svg+xml": SVG}, "dot.png": {"image/png": PNG}}
    cells.append(new_raw_cell(f"<script>{P}</script>", metadata={"raw_mimetype": "text/html", "format": "text/html"}))
    outputs = [new_output("display_data", data={"text/html": f"<script>{P}</script><img src=x onerror=\"{P}\">",
                                                 "text/plain": "html"}),
               new_output("display_data", data={"application/javascript": P, "text/plain": "js"}),
               new_output("display_data", data={"image/svg+xml": SVG}),
               new_output("display_data", data={"text/markdown": f"<img src=x onerror=\"{P}\">"}),
               new_output("execute_result", data={"text/html": f"<iframe srcdoc='<script>{P}</script>'></iframe>"},
                          execution_count=1),
               new_output("display_data", data={"image/png": PNG, "text/plain": "a plot"}),
               new_output("stream", name="stderr", text=VERDICT + "\n  - wrong on case 3\n")]
    graded = new_code_cell("answer = 42", outputs=outputs, metadata={
        "nbgrader": {"grade_id": "test_x", "grade": True, "solution": False, "points": 3},
        "tags": [f"<script>{P}</script>"], "jupyter": {"source_hidden": f"<img src=x onerror=\"{P}\">"}})
    forged = new_code_cell("pass", metadata={"nbgrader": {
        "grade_id": f"\"><script>{P}</script><img src=x onerror=\"{P}\">", "grade": True, "solution": True,
        "points": f"<script>{P}</script>", "comment": f"<img src=x onerror=\"{P}\">"}})
    broken = new_code_cell("pass", metadata={"nbgrader": f"<script>{P}</script>"})
    widgets = {"application/vnd.jupyter.widget-state+json": {"state": {}, "x": f"</script><script>{P}</script>"}}
    return new_notebook(cells=[*cells, graded, forged, broken], metadata={
        "title": f"<script>{P}</script>", "widgets": widgets, "language": 5,
        "language_info": {"name": "python", "pygments_lexer": f"<script>{P}</script>"},
        "kernelspec": {"display_name": f"<script>{P}</script>", "name": "python3", "language": "python"}})


GRADES = Grades(score=2.0, max_score=3.0, cells={"test_x": (2.0, 3.0)})


def visit(browser: object, path: Path) -> dict:
    """Open ``path`` offline, click every link, sweep the mouse; what ran, what was asked for, what is shown."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:image/png"))
                  else route.abort())
    requests: list[str] = []
    dialogs: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    url = path.resolve().as_uri()
    page.goto(url)
    seen = [page.evaluate("typeof top.pwned !== 'undefined' && top.pwned === 1")]
    for i in range(page.evaluate("document.links.length")):
        if page.url != url:
            page.goto(url)
        page.evaluate("i => document.links[i] && document.links[i].click()", i)
        page.wait_for_timeout(30)
        seen.append(page.evaluate("top.pwned === 1"))
    if page.url != url:
        page.goto(url)
    for y in range(0, 900, 60):
        page.mouse.move(600, y)
    page.evaluate("document.querySelectorAll('summary').forEach(s => s.click())")
    page.wait_for_timeout(200)
    seen.append(page.evaluate("top.pwned === 1"))
    result = {
        "ran": any(seen), "dialogs": dialogs, "title": page.title(), "requests": requests,
        "verdict": page.get_by_text(VERDICT).first.is_visible(),
        "score": page.get_by_text("(Score: 2.0 / 3.0)").first.is_visible(),
        "png": page.evaluate("Array.from(document.images).filter(i => i.src.startsWith('data:image/png')"
                             " && i.naturalWidth > 0).length"),
        "dom": page.evaluate("""() => Array.from(document.querySelectorAll('*')).flatMap(e =>
            [...(['SCRIPT', 'IFRAME', 'OBJECT', 'EMBED', 'FORM', 'BASE', 'svg', 'math'].includes(e.tagName)
                 ? [e.tagName] : []),
             ...Array.from(e.attributes).filter(a => a.name.startsWith('on')
                 || (['href', 'src', 'action', 'data', 'xlink:href'].includes(a.name)
                     && /^\\s*(javascript|vbscript|data):/i.test(a.value)
                     && !a.value.startsWith('data:image/png;base64,'))).map(a => e.tagName + ' ' + a.name)])"""),
    }
    context.close()
    return result


@pytest.mark.parametrize("policy", ["as written", "without its content security policy"])
def test_no_payload_runs_in_the_feedback_page(browser: object, tmp_path: Path, policy: str) -> None:
    text = feedback_page(hostile_notebook(), TITLE, GRADES)
    if policy != "as written":  # the sanitiser alone must hold: the policy is only a second line
        marker = '<meta http-equiv="Content-Security-Policy"'
        assert marker in text
        text = text.replace(marker, "<meta data-removed")
    path = tmp_path / "hostile.html"
    path.write_text(text, encoding="utf-8")
    seen = visit(browser, path)
    assert not seen["ran"] and not seen["dialogs"] and seen["title"] == TITLE, seen
    assert not seen["dom"], f"live markup left in the page: {seen['dom']}"
    bad = [u for u in seen["requests"] if u.lower().startswith(("javascript:", "vbscript:", "data:"))
           and not u.startswith("data:image/png")]
    assert not bad, f"the page asked for {bad}"
    assert seen["verdict"] and seen["score"], "the judge's verdict or the score is not shown"
    assert seen["png"] >= 1, "the inline PNG plot is gone: the sanitiser must keep data:image/png images"


def stock_page(nb: nbformat.NotebookNode) -> str:
    """The page as nbgrader's own feedback converter rendered it (its template, nbconvert's sanitize_html on)."""
    import nbgrader.converters
    from nbconvert.exporters import HTMLExporter

    formgrader = Path(nbgrader.converters.__file__).resolve().parents[1] / "server_extensions/formgrader"
    exporter = HTMLExporter(template_name="feedback", sanitize_html=True,
                            extra_template_basedirs=[str(formgrader / "templates")],
                            extra_template_paths=[str(formgrader / "static/node_modules/bootstrap/dist/css")])
    resources = {"nbgrader": {"notebook": TITLE, "score": 2.0, "max_score": 3.0, "late_penalty": 0}}
    nb.metadata.pop("language")  # a number there stops nbconvert altogether: render() drops the metadata
    nb.cells = nb.cells[:-2]  # and so do the forged cells' metadata, without nbgrader's GetGrades before it
    nb.cells[-1].metadata.nbgrader.update(score=2.0, points=3.0)
    return exporter.from_notebook_node(nb, resources=resources)[0]


@pytest.mark.filterwarnings("ignore:No lexer found")  # the notebook's own hostile lexer name
def test_the_stock_nbgrader_page_does_run_a_payload(browser: object, tmp_path: Path) -> None:
    """The control: the same notebook as nbgrader renders it runs a script, so the test above could see one."""
    path = tmp_path / "stock.html"
    path.write_text(stock_page(hostile_notebook()), encoding="utf-8")
    seen = visit(browser, path)
    assert seen["ran"] and seen["dom"], seen


def test_the_sanitised_page_keeps_the_template_styles_and_nothing_of_the_head_else() -> None:
    text = feedback_page(hostile_notebook(), TITLE, GRADES)
    head = text[:text.index("<body>")]
    assert "<style" in head and "panel-heading" in head, "the template's CSS is gone: the page is unreadable"
    assert "<script" not in text.lower() and "mathjax" not in head.lower()
    assert f"<title>{TITLE}</title>" in head and safe_html.POLICY in head
    live = [(tag, name) for tag, name, _ in markup(text) if name.startswith("on") or tag in ("script", "svg", "iframe")]
    assert not live, f"live markup left in the page: {live}"


def markup(text: str) -> list[tuple[str, str, str]]:
    """(tag, attribute, value) of every start tag in ``text``, with an empty attribute for the tag itself."""
    found: list[tuple[str, str, str]] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.extend([(tag, "", ""), *((tag, name, value or "") for name, value in attrs)])

    Parser().feed(text)
    return found


def test_feedback_writes_every_page_sanitised_with_the_gradebook_scores(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m autograder feedback`` end to end on a tiny instructor folder: one graded learner, one unreadable."""
    from autograder.cycle.course import Course
    from autograder.cycle.publish import feedback

    monkeypatch.setenv("GPIPE_INSTRUCTOR_DIR", str(tmp_path / "instructor"))
    assignment, name = "02_partitioner", "partitioner"
    course = Course()
    assert course.generate(assignment, tmp_path / "released")
    nb = nbformat.read(tmp_path / "released" / assignment / f"{name}.ipynb", as_version=4)
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    tests[0].outputs = [new_output("stream", name="stderr", text=f"Grader: {tests[0].metadata.nbgrader.grade_id}: "
                                   "0 / 3 points\n  - wrong on case 3\n")]
    nb.cells[1:1] = hostile_notebook().cells[:len(MARKDOWN)]
    for student, folder in (("eve", "autograded"), ("eve", "submitted"), ("dan", "submitted")):
        (tmp_path / "instructor" / folder / student / assignment).mkdir(parents=True)
    graded = tmp_path / "instructor" / "autograded" / "eve" / assignment
    nbformat.write(nb, graded / f"{name}.ipynb")
    (graded / "timestamp.txt").write_text("2026-12-01 10:00:00.000000 UTC")
    (graded / "result.json").write_text('{"problems": [], "seconds": 1.0, "seed": 1234567}')
    (tmp_path / "instructor" / "submitted" / "dan" / assignment / f"{name}.ipynb").write_text("{not json")
    with course.gradebook() as gb:
        gb.update_or_create_student("eve")
        for grade in gb.update_or_create_submission(assignment, "eve").notebooks[0].grades:
            grade.auto_score = grade.max_score if grade.name != tests[0].metadata.nbgrader.grade_id else 0.0
        gb.db.commit()
        score, top = gb.find_submission(assignment, "eve").score, gb.find_assignment(assignment).max_score

    pages = feedback([assignment])
    root = tmp_path / "instructor" / "feedback"
    assert sorted(p.relative_to(root).as_posix() for p in pages) == [f"dan/{assignment}/{name}.html",
                                                                      f"eve/{assignment}/{name}.html"]
    eve = (root / "eve" / assignment / f"{name}.html").read_text()
    assert f"{name} (Score: {score:.1f} / {top:.1f})" in eve and 0 < score < top
    assert f"Grader: {tests[0].metadata.nbgrader.grade_id}: 0 / 3 points" in eve
    live = [(tag, attr, value) for tag, attr, value in markup(eve) if attr.startswith("on")
            or tag in ("script", "svg", "iframe") or value.lower().lstrip().startswith(("javascript:", "data:text"))]
    assert not live, live
    assert sorted(p.name for p in (root / "eve" / assignment).iterdir()) == [f"{name}.html", "timestamp.txt"]
    assert "1234567" not in eve, "the judge's seed reached the learner's folder"
    dan = (root / "dan" / assignment / f"{name}.html").read_text()
    assert "INVALID_NOTEBOOK" in dan and "Score: 0.0" in dan

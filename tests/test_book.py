"""The published book: it builds strictly, works in a real browser, and leaks no solutions.

The site is what learners see first, so it is tested as they meet it: built by
``book/build.py`` (warnings are errors), served over HTTP, opened in headless
Chromium. The explorer must react to its sliders with gpipe_core's numbers,
figures must load, launch buttons must point at the repository, learner
notebooks must appear unexecuted, and nothing from the solution notebooks
(solution blocks, hidden tests) may reach any file of the built site.

Chromium comes from the system (Debian: ``apt-get install -y chromium``); a
missing browser fails these tests instead of skipping them.
"""

from __future__ import annotations

import functools
import html
import http.server
import importlib.util
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import yaml

from gpipe_core.schedule import SCHEDULES
from gpipe_core.theory import bubble_fraction

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
TEXT_SUFFIXES = {".html", ".txt", ".ipynb", ".md", ".js", ".json", ".py"}

_spec = importlib.util.spec_from_file_location("book_build", ROOT / "book" / "build.py")
build = importlib.util.module_from_spec(_spec)  # book/build.py: the toc helpers (not PyPA's `build`)
_spec.loader.exec_module(build)

pytestmark = pytest.mark.timeout(1500)  # a first build executes every page (minutes on 2 cores)


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def toc_entries() -> list[str]:
    return build.toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8")))


def learner_notebooks() -> list[str]:
    return [e for e in toc_entries() if e.startswith("notebooks/")]


@pytest.fixture(scope="module")
def site() -> Path:
    result = subprocess.run([sys.executable, str(ROOT / "book" / "build.py")], cwd=ROOT,
                            capture_output=True, text=True, timeout=1400)
    assert result.returncode == 0, (
        f"book/build.py failed (exit {result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}")
    assert (SITE / "index.html").is_file()
    return SITE


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join(timeout=10)
    httpd.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` (Debian/Ubuntu)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    yield page
    page.close()


# ---------------------------------------------------------------- the toc and the build script

def test_toc_names_every_assignment_notebook_and_every_file_exists() -> None:
    expected = {f"notebooks/{n}/{n.split('_', 1)[1]}" for n in
                ("01_microbatching", "02_partitioner", "03_scheduler", "04_recomputation", "05_assembling")}
    assert expected <= set(learner_notebooks()), f"_toc.yml must list {sorted(expected - set(learner_notebooks()))}"
    missing = [e for e in toc_entries() if not build.exists(e)]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"


def test_prune_drops_missing_entries_and_empty_parts() -> None:
    toc = {"format": "jb-book", "root": "intro", "parts": [
        {"caption": "A", "chapters": [{"file": "a", "sections": [{"file": "nb/a"}]}, {"file": "b"}]},
        {"caption": "B", "chapters": [{"file": "gone"}]}]}
    pruned = build.prune(toc, {"nb/a", "gone"})
    assert pruned == {"format": "jb-book", "root": "intro",
                      "parts": [{"caption": "A", "chapters": [{"file": "a"}, {"file": "b"}]}]}
    assert build.toc_files(pruned) == ["intro", "a", "b"]


# ---------------------------------------------------------------- the browser

def test_home_page_renders(site: Path, server: str, page: object) -> None:
    page.goto(server + "/")  # index.html redirects to the root page
    page.wait_for_selector("article h1")
    assert page.locator("article h1").first.inner_text().startswith("Start here")
    assert config()["title"] in page.title()
    nav = page.locator("nav.bd-links").inner_text()
    for chapter in ("The paper", "Explorer", "Micro-batching", "Cheat sheet", "Instructor guide"):
        assert chapter in nav, f"the sidebar lacks {chapter!r}: {nav[:400]}"
    assert not page.js_errors, page.js_errors


@pytest.mark.parametrize("path", ["book/paper.html", "book/experiments/speedup.html"])
def test_chapter_figures_load(site: Path, server: str, page: object, path: str) -> None:
    page.goto(f"{server}/{path}")
    images = page.evaluate("Array.from(document.querySelectorAll('article img'))"
                           ".map(i => ({src: i.getAttribute('src'), w: i.naturalWidth}))")
    assert len(images) >= 2, f"{path} should show its measured figures, found {images}"
    broken = [i["src"] for i in images if i["w"] <= 0]
    assert not broken, f"images that did not load on {path}: {broken}"


def _explorer_state(page: object) -> dict:
    return page.evaluate("""() => {
        const root = document.querySelector('.gpipe-explorer');
        const cells = Array.from(root.querySelectorAll('rect[data-action]'));
        return {bubble: root.querySelector('[data-role=bubble]').textContent,
                formula: root.querySelector('[data-role=bubble-formula]').textContent,
                inflight: root.querySelector('[data-role=inflight]').textContent,
                actions: cells.map(r => [r.dataset.action, +r.getAttribute('x'), +r.getAttribute('width')])};
    }""")


def _ticks(actions: list) -> dict[str, int]:
    """Each drawn action's clock tick, recovered from its box's x position."""
    left = min(x for _, x, _ in actions)
    cell = actions[0][2] + 1
    return {name: round((x - left) / cell) for name, x, _ in actions}


def _expected_ticks(schedule: str, K: int, M: int) -> dict[str, int]:
    table = SCHEDULES[schedule](M, K)
    return {f"{a.kind}{a.microbatch}@{a.stage}": t for t, tick in enumerate(table) for a in tick}


def test_explorer_slider_redraws_chart_and_bubble(site: Path, server: str, page: object) -> None:
    page.goto(f"{server}/book/explorer.html")
    page.wait_for_selector(".gpipe-explorer rect[data-action]")
    k_slider = page.locator(".gpipe-explorer input[data-role=K]")
    K, M = int(k_slider.input_value()), int(page.locator(".gpipe-explorer input[data-role=M]").input_value())
    before = _explorer_state(page)
    assert before["bubble"] == f"{bubble_fraction(M, K):.3f}"
    assert _ticks(before["actions"]) == _expected_ticks("gpipe", K, M)

    k_slider.focus()
    k_slider.press("ArrowRight")
    k_slider.press("ArrowRight")  # moved by the keyboard, as a reader would
    after = _explorer_state(page)
    assert int(k_slider.input_value()) == K + 2
    assert after["actions"] != before["actions"], "moving K did not redraw the chart"
    assert len(after["actions"]) == 2 * (K + 2) * M
    assert after["bubble"] == f"{bubble_fraction(M, K + 2):.3f}" != before["bubble"]
    assert after["formula"].endswith(f"= {bubble_fraction(M, K + 2):.3f}")
    assert _ticks(after["actions"]) == _expected_ticks("gpipe", K + 2, M)

    page.select_option(".gpipe-explorer select[data-role=schedule]", "1f1b")
    onefb = _explorer_state(page)
    assert _ticks(onefb["actions"]) == _expected_ticks("1f1b", K + 2, M)
    assert onefb["inflight"].startswith("[" + ", ".join(str(min(K + 2 - j, M)) for j in range(K + 2)))
    assert not page.js_errors, page.js_errors


# ---------------------------------------------------------------- explorer data, links, notebooks

def test_explorer_data_is_gpipe_cores_tables(site: Path) -> None:
    text = (site / "_static" / "gpipe-explorer-data.js").read_text(encoding="utf-8")
    data = json.loads(text[text.index("{"): text.rindex("}") + 1])
    assert set(data["schedules"]) == set(SCHEDULES)
    for name, make in SCHEDULES.items():
        for K in range(1, 9):
            for M in range(1, 33):
                entry = data["schedules"][name][f"{K},{M}"]
                where = {a: t for t, tick in enumerate(make(M, K)) for a in tick}
                for j in range(K):
                    got = entry["ticks"][j]
                    want = sorted(((a.kind != "F", a.microbatch), t) for a, t in where.items() if a.stage == j)
                    assert got == [t for _, t in want], (name, K, M, j)
                assert entry["bubble_formula"] == pytest.approx(bubble_fraction(M, K), abs=1e-6)


def test_launch_buttons_point_at_the_repository(site: Path) -> None:
    repo = config()["repository"]["url"].rstrip("/")
    branch = config()["repository"].get("branch", "main")
    org_repo = repo.removeprefix("https://github.com/")
    for entry in learner_notebooks():
        page = (site / f"{entry}.html").read_text(encoding="utf-8")
        colab = f"https://colab.research.google.com/github/{org_repo}/blob/{branch}/{entry}.ipynb"
        binder = f"https://mybinder.org/v2/gh/{org_repo}/{branch}?urlpath=lab/tree/{entry}.ipynb"
        assert colab in html.unescape(page), f"{entry}: no Colab launch link {colab}"
        assert binder in html.unescape(page), f"{entry}: no Binder launch link {binder}"
    paper = (site / "book" / "paper.html").read_text(encoding="utf-8")
    assert "launch-buttons" not in paper, "MyST pages must not offer launch buttons (Colab cannot open .md)"


def test_learner_notebooks_are_shown_unexecuted(site: Path) -> None:
    for entry in learner_notebooks():
        page = (site / f"{entry}.html").read_text(encoding="utf-8")
        assert "cell_input" in page, f"{entry}: the notebook's code cells are missing from the page"
        assert not re.search(r'class="[^"]*\bcell_output\b', page), (
            f"{entry}: the book executed the learner notebook; it must show it as released, without outputs")


# ---------------------------------------------------------------- no solutions on the site

def solution_fragments() -> list[str]:
    """Distinctive lines of every solution block and hidden test in solutions/.

    Lines the learner version or the public engine also contain are not secrets and are left out.
    """
    public = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "gpipe_core").glob("*.py"))
    public += "\n".join(c.source for p in (ROOT / "notebooks").glob("*/*.ipynb")
                        for c in nbformat.read(p, as_version=4).cells)
    public = _normal(public)
    fragments = set()
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            inside = False
            for line in cell.source.splitlines():
                if "### BEGIN SOLUTION" in line or "### BEGIN HIDDEN TESTS" in line:
                    inside = True
                elif "### END SOLUTION" in line or "### END HIDDEN TESTS" in line:
                    inside = False
                elif inside and len(line.strip()) >= 24 and _normal(line) not in public:
                    fragments.add(_normal(line))
    return sorted(fragments)


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _site_text(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".html":
        text = html.unescape(re.sub(r"<[^>]+>", "", text))
    elif path.suffix == ".ipynb":
        text = "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells)
    return _normal(text)


def leaks(text: str, fragments: list[str]) -> list[str]:
    """Solution markers and solution lines present in ``text`` (already normalised)."""
    found = [m for m in MARKERS if m in text]
    return found + [f for f in fragments if f in text]


def test_leak_check_catches_a_planted_solution_line() -> None:
    fragments = solution_fragments()
    assert len(fragments) >= 10, "expected solution notebooks in solutions/ with ### BEGIN SOLUTION blocks"
    planted = "<pre><span class='k'>x</span> = 1\n" + html.escape(fragments[0]) + "</pre>"
    assert leaks(_normal(html.unescape(re.sub(r"<[^>]+>", "", planted))), fragments) == [fragments[0]]
    assert leaks("### BEGIN HIDDEN TESTS", []) == ["BEGIN HIDDEN TESTS"]


def test_site_contains_no_solution_code_or_hidden_tests(site: Path) -> None:
    fragments = solution_fragments()
    files = [p for p in site.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES]
    assert any(p.suffix == ".html" for p in files)
    found = {str(p.relative_to(site)): hits for p in files if (hits := leaks(_site_text(p), fragments))}
    assert not found, f"solution code or hidden tests on the published site: {found}"

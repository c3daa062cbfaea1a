"""The book as the tests meet it: a strict build, a local server, Chromium pages, and text searches.

Fixtures (``site``, ``server``, ``browser``, ``page``, ``phone``) and helpers
of ``tests/test_book.py``, kept apart so the test module reads as the list of
what a reader is promised. The site is built once per test module by
``book/build.py`` (warnings are errors), served over HTTP and opened in
headless Chromium at a desktop width and at a phone's 375 px on a 2x screen;
``offline`` pages refuse every request outside the site. Chromium comes from
the system (Debian: ``apt-get install -y chromium``); a missing browser fails
the tests instead of skipping them.
"""

from __future__ import annotations

import contextlib
import functools
import html
import http.server
import importlib.util
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TEXT_SUFFIXES = {".html", ".txt", ".ipynb", ".md", ".js", ".json", ".py"}
PHONE = {"width": 375, "height": 740}
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


@pytest.fixture(scope="module")
def site() -> Path:
    result = subprocess.run([sys.executable, str(ROOT / "book" / "build.py")], cwd=ROOT,
                            capture_output=True, text=True, timeout=1400)
    assert result.returncode == 0, (
        f"book/build.py failed (exit {result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}")
    assert (SITE / "index.html").is_file()
    return SITE


def load_module(name: str, path: Path) -> object:
    """A module of the book's (``book/build.py``, ``book/_ext/*.py``) loaded from its file under ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[str]:
    """``folder`` served over HTTP on a free local port, quietly; yields the base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        httpd.server_close()


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    with serving(site) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` (Debian/Ubuntu)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def open_page(browser: object, server: str, offline: bool = True, **options: object) -> object:
    """A page in a fresh context; with ``offline`` every request that is not to the local server fails."""
    context = browser.new_context(**options)
    if offline:
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
                      else route.abort())
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    return page


@pytest.fixture
def page(browser: object, server: str) -> Iterator[object]:
    page = open_page(browser, server, viewport={"width": 1280, "height": 900})
    yield page
    page.context.close()


@pytest.fixture
def phone(browser: object, server: str) -> Iterator[object]:
    page = open_page(browser, server, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    yield page
    page.context.close()


def explorer_state(page: object) -> dict:
    return page.evaluate("""() => {
        const root = document.querySelector('.gpipe-explorer');
        const svg = root.querySelector('svg'), box = svg.getBoundingClientRect();
        const texts = Array.from(svg.querySelectorAll('text'));
        return {bubble: root.querySelector('[data-role=bubble]').textContent,
                formula: root.querySelector('[data-role=bubble-formula]').textContent,
                inflight: root.querySelector('[data-role=inflight]').textContent,
                actions: Array.from(svg.querySelectorAll('rect[data-action]')).map(r =>
                    [r.dataset.action, +r.dataset.device, +r.dataset.start]),
                memory: Array.from(svg.querySelectorAll('rect[data-memory]')).map(r => +r.dataset.memory),
                legend: root.querySelector('.gpipe-explorer-legend').textContent,
                svgLeft: box.left, svgRight: box.right, pageWidth: document.documentElement.scrollWidth,
                smallestFont: Math.min(...texts.map(t => parseFloat(getComputedStyle(t).fontSize))),
                readouts: Array.from(root.querySelectorAll('dd')).map(d => d.getBoundingClientRect().width)};
    }""")


def set_control(page: object, role: str, value: int) -> None:
    page.locator(f".gpipe-explorer input[data-role={role}]").fill(str(value))


def pick(page: object, schedule: str) -> None:
    """Choose a schedule and wait for its entries, which load from their own file on first use."""
    page.select_option(".gpipe-explorer select[data-role=schedule]", schedule)
    page.wait_for_function(f"window.GPIPE_EXPLORER.schedules[{schedule!r}].entries !== undefined")


def solution_fragments() -> list[str]:
    """Distinctive lines of every solution block and hidden test in solutions/.

    Lines the learner version or the public engine also contain are not secrets and are left out.
    """
    public = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "gpipe_core").glob("*.py"))
    public += "\n".join(c.source for p in (ROOT / "notebooks").glob("*/*.ipynb")
                        for c in nbformat.read(p, as_version=4).cells)
    public = normal(public)
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
                elif inside and len(line.strip()) >= 24 and normal(line) not in public:
                    fragments.add(normal(line))
    return sorted(fragments)


def normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def site_text(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".html":
        text = html.unescape(re.sub(r"<[^>]+>", "", text))
    elif path.suffix == ".ipynb":
        text = "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells)
    return normal(text)


def leaks(text: str, fragments: list[str]) -> list[str]:
    """Solution markers and solution lines present in ``text`` (already normalised)."""
    found = [m for m in MARKERS if m in text]
    return found + [f for f in fragments if f in text]

"""The published book as its readers meet it: built strictly, read in a real browser, leaking no solutions.

The site is built by ``book/build.py`` (warnings are errors), served over HTTP
and opened in headless Chromium at a desktop width and at a phone's 375 px, on
a 2x (HiDPI) screen where sharpness matters, and with every request outside
the site refused where the site must work offline. Checked here: the explorer
reacts to its controls with gpipe_core's numbers and fits a phone; the phone
navigation opens; formulas render with no network; every figure is sharp and
captioned; definition lists render as lists; every experiment page and learner
notebook has launch buttons; and nothing from the solution notebooks (solution
blocks, hidden tests) reaches any file of the built site. What the book
computes without a build (the explorer's numbers, the launchable notebooks)
is checked in ``tests/test_book_data.py``.

Chromium comes from the system (Debian: ``apt-get install -y chromium``); a
missing browser fails these tests instead of skipping them.
"""

from __future__ import annotations

import html
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

# the book's fixtures (site, server, browser, page, phone) live in helpers.book and come through conftest.py
from helpers.book import (
    PHONE,
    TEXT_SUFFIXES,
    explorer_state,
    leaks,
    normal,
    open_page,
    pick,
    set_control,
    site_text,
    solution_fragments,
)

from gpipe_core.sim.theory import bubble_fraction

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> object:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load("book_build", ROOT / "book" / "build.py")  # the toc helpers (not PyPA's `build`)
launch = _load("book_launch", ROOT / "book" / "launch.py")

pytestmark = pytest.mark.timeout(1500)  # a first build executes every page (minutes on 2 cores)


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def toc_entries() -> list[str]:
    return build.toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8")))


def learner_notebooks() -> list[str]:
    return [e for e in toc_entries() if e.startswith("notebooks/")]


# ---------------------------------------------------------------- pages and navigation

def test_home_page_renders_with_favicon(server: str, page: object) -> None:
    page.goto(server + "/")  # index.html redirects to the root page
    page.wait_for_selector("article h1")
    assert page.locator("article h1").first.inner_text().startswith("Start here")
    assert config()["title"] in page.title()
    nav = page.locator("nav.bd-links").inner_text()
    for chapter in ("The paper", "Explorer", "Micro-batching", "Cheat sheet", "Instructor guide"):
        assert chapter in nav, f"the sidebar lacks {chapter!r}: {nav[:400]}"
    icon = page.evaluate("document.querySelector('link[rel=icon]').href")
    assert icon.endswith("favicon.svg") and page.request.get(icon).ok
    assert not page.js_errors, page.js_errors


def test_phone_navigation_button_opens_the_sidebar(server: str, phone: object) -> None:
    phone.goto(f"{server}/book/paper.html")
    buttons = [b for b in phone.locator(".primary-toggle").all() if b.is_visible()]
    assert len(buttons) == 1, "at 375 px exactly one navigation button should be visible"
    buttons[0].click()
    phone.wait_for_function("document.getElementById('pst-primary-sidebar-modal').open", timeout=5000)
    link = phone.locator("#pst-primary-sidebar-modal nav.bd-links a", has_text="Explorer").first
    assert link.is_visible()
    link.click()
    phone.wait_for_url("**/book/explorer.html")
    assert not phone.js_errors, phone.js_errors


def test_no_page_is_wider_than_a_phone(site: Path, server: str, phone: object) -> None:
    too_wide = {}
    for path in sorted(site.glob("book/**/*.html")) + sorted(site.glob("notebooks/**/*.html")):
        phone.goto(f"{server}/{path.relative_to(site)}")
        width = phone.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            too_wide[str(path.relative_to(site))] = width
    assert not too_wide, f"pages wider than a {PHONE['width']} px phone (px): {too_wide}"


def test_definition_lists_render_as_lists(site: Path) -> None:
    raw = {}
    for path in site.rglob("*.html"):
        paragraphs = re.findall(r"<p>(.*?)</p>", path.read_text(encoding="utf-8"), flags=re.S)
        found = [p for p in paragraphs if re.search(r"(^|\n)\s*: \S", html.unescape(re.sub(r"<[^>]+>", "", p)))]
        if found:
            raw[str(path.relative_to(site))] = found[:2]
    assert not raw, f"'Term : definition' blocks shown as paragraphs (MyST deflist not enabled?): {raw}"
    cheatsheet = (site / "book" / "cheatsheet.html").read_text(encoding="utf-8")
    assert cheatsheet.count("<dt") >= 7


def test_formulas_render_without_network(site: Path, server: str, page: object) -> None:
    assert not any("cdn.jsdelivr" in p.read_text(encoding="utf-8") for p in site.rglob("*.html")), \
        "a page still loads MathJax from a CDN"
    page.goto(f"{server}/book/paper.html")  # the fixture refuses every request outside the site
    page.wait_for_selector("mjx-container", timeout=30000)
    assert page.locator("mjx-container").count() >= 3
    text = page.locator("article").inner_text()
    assert "\\frac" not in text and "$$" not in text, "raw LaTeX is showing"
    assert not page.js_errors, page.js_errors


# ---------------------------------------------------------------- figures and launch buttons

def test_every_figure_is_sharp_and_captioned(site: Path, server: str, browser: object) -> None:
    pages = [e for e in launch.executed_pages(toc_entries()) if e.startswith("book/")]
    page = open_page(browser, server, viewport={"width": 1280, "height": 900}, device_scale_factor=2)
    problems, seen = [], 0
    for entry in pages:
        page.goto(f"{server}/{entry}.html")
        images = page.evaluate("""Array.from(document.querySelectorAll('article img')).map(i => ({
            src: i.getAttribute('src'), natural: i.naturalWidth, shown: i.getBoundingClientRect().width,
            caption: ((i.closest('figure') || {}).querySelector ?
                      (i.closest('figure').querySelector('figcaption') || {}).textContent || '' : '').trim()}))""")
        for image in images:
            seen += 1
            if image["natural"] <= 0:
                problems.append(f"{entry}: {image['src']} did not load")
            elif not image["src"].endswith(".svg") and image["natural"] < 2 * image["shown"]:
                problems.append(f"{entry}: {image['src']} is {image['natural']} px wide, shown at "
                                f"{image['shown']:.0f} px: blurred on a 2x screen (save SVG or dpi >= 200)")
            if len(image["caption"]) < 20:
                problems.append(f"{entry}: {image['src']} has no caption")
    page.context.close()
    assert seen >= 10, f"expected the measured figures, found {seen}"
    assert not problems, "\n".join(problems)


def test_launch_buttons_open_notebooks(site: Path) -> None:
    repo = config()["repository"]["url"].rstrip("/")
    branch = config()["repository"].get("branch", "main")
    org_repo = repo.removeprefix("https://github.com/")
    targets = learner_notebooks() + launch.launchable_pages(toc_entries())
    assert any(t.startswith("book/experiments/") for t in targets)
    for entry in targets:
        text = html.unescape((site / f"{entry}.html").read_text(encoding="utf-8"))
        colab = f"https://colab.research.google.com/github/{org_repo}/blob/{branch}/{entry}.ipynb"
        binder = f"https://mybinder.org/v2/gh/{org_repo}/{branch}?urlpath=lab/tree/{entry}.ipynb"
        assert colab in text, f"{entry}: no Colab launch link {colab}"
        assert binder in text, f"{entry}: no Binder launch link {binder}"
    others = set(launch.executed_pages(toc_entries())) - set(targets)
    assert "book/benchmarks" in others
    for entry in others:
        assert "launch-buttons" not in (site / f"{entry}.html").read_text(encoding="utf-8"), entry


def test_assignment_pages_give_points_and_time(site: Path) -> None:
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    points = _load("book_ext", ROOT / "book" / "_ext" / "gpipe_book.py").assignment_points
    for path in sorted((ROOT / "book" / "assignments").glob("*.md")):
        text = html.unescape(re.sub(r"<[^>]+>", "", (site / "book" / "assignments" / f"{path.stem}.html")
                                    .read_text(encoding="utf-8")))
        assert f"Points: {points(path.stem, ROOT)} points" in text, path.stem
        assert re.search(r"Time: about [\d½]+( to [\d½]+)? hours?", text), path.stem


def test_learner_notebooks_are_shown_unexecuted(site: Path) -> None:
    for entry in learner_notebooks():
        text = (site / f"{entry}.html").read_text(encoding="utf-8")
        assert "cell_input" in text, f"{entry}: the notebook's code cells are missing from the page"
        assert not re.search(r'class="[^"]*\bcell_output\b', text), (
            f"{entry}: the book executed the learner notebook; it must show it as released, without outputs")


# ---------------------------------------------------------------- the explorer

def test_explorer_controls_redraw_chart_bubble_and_memory(server: str, page: object) -> None:
    page.goto(f"{server}/book/explorer.html")
    page.wait_for_selector(".gpipe-explorer rect[data-action]")
    k_slider = page.locator(".gpipe-explorer input[data-role=K]")
    K, M = int(k_slider.input_value()), int(page.locator(".gpipe-explorer input[data-role=M]").input_value())
    before = explorer_state(page)
    assert before["bubble"] == f"{bubble_fraction(M, K):.3f}"
    ticks = {a: start for a, _, start in before["actions"]}
    assert ticks["F0@0"] == 0 and ticks[f"F{M - 1}@{K - 1}"] == M + K - 2  # the paper's table, one tick each
    assert "forward" in before["legend"] and "backward" in before["legend"] and "idle" in before["legend"]

    k_slider.focus()
    k_slider.press("ArrowRight")
    k_slider.press("ArrowRight")  # moved by the keyboard, as a reader would
    after = explorer_state(page)
    assert int(k_slider.input_value()) == K + 2
    assert len(after["actions"]) == 2 * (K + 2) * M
    assert after["bubble"] == f"{bubble_fraction(M, K + 2):.3f}" != before["bubble"]
    assert after["formula"].endswith(f"= {bubble_fraction(M, K + 2):.3f}")
    assert after["memory"] == [M] * (K + 2)  # GPipe holds every micro-batch on every device

    pick(page, "1f1b")
    onefb = explorer_state(page)
    assert onefb["memory"] == [min(K + 2 - d, M) for d in range(K + 2)]
    assert onefb["inflight"].startswith("[" + ", ".join(str(min(K + 2 - d, M)) for d in range(K + 2)))

    slow = page.locator(".gpipe-explorer input[data-role=cost]")
    slow.fill("1")  # backward = 2 forwards
    costly = explorer_state(page)
    assert max(s for _, _, s in costly["actions"]) > max(s for _, _, s in onefb["actions"])
    assert not page.js_errors, page.js_errors


def test_explorer_fits_a_phone_at_the_largest_table(server: str, phone: object) -> None:
    phone.goto(f"{server}/book/explorer.html")
    phone.wait_for_selector(".gpipe-explorer rect[data-action]")
    set_control(phone, "K", 8)
    set_control(phone, "M", 32)
    state = explorer_state(phone)
    assert len(state["actions"]) == 2 * 8 * 32
    assert state["pageWidth"] <= PHONE["width"], f"the page is {state['pageWidth']} px wide on a 375 px phone"
    assert 0 <= state["svgLeft"] and state["svgRight"] <= PHONE["width"], "the chart runs off the screen"
    last = max(s for _, _, s in state["actions"])
    assert last > 0, "the whole timeline, bubble and backwards included, is drawn"
    assert state["smallestFont"] >= 12, f"chart text of {state['smallestFont']} px is too small to read"
    assert min(state["readouts"]) >= 250, f"readouts squeezed to {min(state['readouts']):.0f} px"
    assert not phone.js_errors, phone.js_errors


# ---------------------------------------------------------------- no solutions on the site

def test_leak_check_catches_a_planted_solution_line() -> None:
    fragments = solution_fragments()
    assert len(fragments) >= 10, "expected solution notebooks in solutions/ with ### BEGIN SOLUTION blocks"
    planted = "<pre><span class='k'>x</span> = 1\n" + html.escape(fragments[0]) + "</pre>"
    assert leaks(normal(html.unescape(re.sub(r"<[^>]+>", "", planted))), fragments) == [fragments[0]]
    assert leaks("### BEGIN HIDDEN TESTS", []) == ["BEGIN HIDDEN TESTS"]


def test_site_contains_no_solution_code_or_hidden_tests(site: Path) -> None:
    fragments = solution_fragments()
    files = [p for p in site.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES and "mathjax" not in p.parts]
    assert any(p.suffix == ".html" for p in files)
    found = {str(p.relative_to(site)): hits for p in files if (hits := leaks(site_text(p), fragments))}
    assert not found, f"solution code or hidden tests on the published site: {found}"

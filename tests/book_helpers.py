"""Helpers of tests/test_book.py: reading the explorer's state in a page, and finding solutions in text.

Kept apart so the test module reads as the list of what a reader is promised.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


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

"""Launchable copies of the book's executed pages: ``book/<page>.md`` -> ``book/<page>.ipynb``.

Why: the experiment pages are MyST text notebooks, which Colab cannot open and
Binder shows as plain text. sphinx-book-theme builds its Colab and Binder
launch buttons from a page's path, and when an ``.ipynb`` of the same name sits
beside a ``.md`` page it points the buttons at that notebook. So for every
executed page in the toc this module writes that notebook (the page's cells,
with deterministic cell ids so an unchanged page gives an unchanged file),
preceded by a setup cell that pip-installs the course from ``repository.url``
on a fresh runtime, as the learner notebooks do.

The ``.md`` stays the source: ``book/build.py`` rewrites the notebooks before
every build, and ``tests/test_book.py`` checks that the committed notebooks are
what this module writes (the launch buttons open the committed copy on GitHub).
Pages that cannot or should not run on their own (one reads repository files by
a relative path; the assignment chapters point at the assignment's notebook) are
listed in ``NOT_LAUNCHABLE`` with the reason.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOT_LAUNCHABLE = {  # a page, or every page under a folder (ending in /), and why
    "book/benchmarks": "it reads benchmarks/results/bench.json, which `make bench` writes in a clone",
    "book/assignments/": "an assignment's own notebook is the one to open; its chapter only shows the result",
}
SETUP = '''# Setup: run me first. On Colab (or any fresh runtime) this installs the course package.
import importlib.util, subprocess, sys
REPO = "{repo}"
if importlib.util.find_spec("gpipe_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{{REPO}}"], check=True)'''
NOTE = ("*This notebook is the book page `{page}.md`, written by `book/build.py` so that Colab and Binder "
        "can open it; edit the page, not this copy. Directives such as `{{note}}` render only on the "
        "site.*")


def executed_pages(entries: list[str], root: Path = ROOT) -> list[str]:
    """The toc entries under book/ that are MyST notebooks (a ``kernelspec`` in their front matter)."""
    pages = []
    for entry in entries:
        path = root / f"{entry}.md"
        if entry.startswith("book/") and path.is_file() and "kernelspec" in _front_matter(path):
            pages.append(entry)
    return pages


def launchable_pages(entries: list[str], root: Path = ROOT) -> list[str]:
    return [page for page in executed_pages(entries, root)
            if not any(page == k or (k.endswith("/") and page.startswith(k)) for k in NOT_LAUNCHABLE)]


def _front_matter(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    return yaml.safe_load(text[4:end]) or {} if end > 0 else {}


def notebook_text(page: str, repo: str, root: Path = ROOT) -> str:
    """The launchable notebook of ``page`` (a toc entry such as ``book/experiments/speedup``), as JSON text."""
    from myst_nb.core.read import read_myst_markdown_notebook

    source = (root / f"{page}.md").read_text(encoding="utf-8")
    page_nb = read_myst_markdown_notebook(source, path=root / f"{page}.md")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": page_nb.metadata["kernelspec"],
                                            "language_info": {"name": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell(NOTE.format(page=page)),
                nbformat.v4.new_code_cell(SETUP.format(repo=repo))] + list(page_nb.cells)
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def write_notebooks(entries: list[str], repo: str, root: Path = ROOT) -> list[Path]:
    """Write (or refresh) the notebook of every launchable page; returns the files that changed."""
    changed = []
    for page in launchable_pages(entries, root):
        target = root / f"{page}.ipynb"
        text = notebook_text(page, repo, root)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            changed.append(target)
    return changed

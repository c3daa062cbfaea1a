"""The notebooks' links: the setup cell's repository and the book pages they point at.

A learner on a fresh Colab runtime gets ``gpipe_core`` by pip-installing REPO
from the setup cell, so a REPO that drifted from ``repository.url`` in
``_config.yml`` (the one place that names the repository) breaks every
notebook there while passing everywhere the package is already installed.

A notebook's link to a book page must open the executed page of the published
site (figures drawn, outputs shown), the address ``book/published.py`` derives
from the same ``repository.url``; a link to the page's MyST source on GitHub
shows code without its results.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ["01_microbatching", "02_partitioner", "03_scheduler", "04_recomputation", "05_assembling",
            "06_distributed", "07_beat_the_bubble", "08_language_model"]
FOUND = sorted(p.parent.name for p in (ROOT / "solutions").glob("*/*.ipynb"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _published() -> object:
    spec = importlib.util.spec_from_file_location("book_published", ROOT / "book" / "published.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


published = _published()


def repository_url() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]["url"]


def setup_cell(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path} has no code cell"
    return code[0]


@pytest.mark.parametrize("assignment", sorted(set(EXPECTED) | set(FOUND)))
@pytest.mark.parametrize("tree", ["solutions", "notebooks"])
def test_setup_cell_installs_this_repository(tree: str, assignment: str) -> None:
    notebooks = sorted((ROOT / tree / assignment).glob("*.ipynb"))
    if not notebooks:
        pytest.skip(f"{tree}/{assignment}/ has no notebook yet")
    url = repository_url()
    for path in notebooks:
        cell = setup_cell(path)
        meta = cell.metadata.get("nbgrader", {})
        assert meta.get("grade_id") == "setup" and meta.get("locked") is True, (
            f"{path.relative_to(ROOT)}: the first code cell must be the locked setup cell (grade_id 'setup', "
            "locked true), see .helpers/NOTEBOOKS.md")
        found = re.findall(r'^REPO = "([^"]*)"', cell.source, flags=re.M)
        assert found == [url], (
            f"{path.relative_to(ROOT)}: the setup cell sets REPO to {found or 'nothing'}, but _config.yml's "
            f"repository.url is {url!r}; write REPO = \"{url}\" in solutions/{assignment}/ and run "
            f"python -m autograder release {assignment}")
        assert 'f"git+{REPO}"' in cell.source, f"{path.relative_to(ROOT)}: the setup cell must pip-install git+REPO"


def test_config_names_a_github_repository() -> None:
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repository_url()), (
        "_config.yml repository.url must be https://github.com/<owner>/<name> (launch buttons and pip use it)")


def book_links(path: Path) -> list[str]:
    """Every markdown link of the notebook that aims at a page of the book (``book/...``)."""
    cells = nbformat.read(path, as_version=4).cells
    return [url for c in cells if c.cell_type == "markdown" for url in LINK.findall(c.source) if "/book/" in url]


@pytest.mark.parametrize("assignment", sorted(set(EXPECTED) | set(FOUND)))
@pytest.mark.parametrize("tree", ["solutions", "notebooks"])
def test_book_links_open_the_published_executed_page(tree: str, assignment: str) -> None:
    notebooks = sorted((ROOT / tree / assignment).glob("*.ipynb"))
    if not notebooks:
        pytest.skip(f"{tree}/{assignment}/ has no notebook yet")
    site = published.site_url()
    for path in notebooks:
        for url in book_links(path):
            where = f"{path.relative_to(ROOT)}: the link {url}"
            page = re.sub(r"\.(md|ipynb|html)$", "", url.split("/book/", 1)[1].split("#")[0])
            want = published.page_url(f"book/{page}")
            assert url.split("#")[0] == want, (
                f"{where} must open the book's executed page, {want} (book/published.py's page_url; a link to "
                f"the page's source shows no results); fix it in solutions/{assignment}/ and run "
                f"python -m autograder release {assignment}")
            assert url.startswith(site) and (ROOT / "book" / f"{page}.md").is_file(), (
                f"{where} names no page of the book: book/{page}.md does not exist")


def test_published_site_is_the_github_pages_address() -> None:
    config = {"repository": {"url": "https://github.com/Some-Org/some.repo"}}
    assert published.site_url(config) == "https://some-org.github.io/some.repo/"
    assert published.page_url("book/experiments/speedup.md", config) == (
        "https://some-org.github.io/some.repo/book/experiments/speedup.html")
    assert published.site_url({"repository": {"url": "https://github.com/me/me.github.io"}}) == "https://me.github.io/"
    assert published.site_url(config | {"html": {"baseurl": "https://course.example.org/gpipe"}}) == (
        "https://course.example.org/gpipe/")
    with pytest.raises(ValueError, match="html.baseurl"):
        published.site_url({"repository": {"url": "https://gitlab.com/o/r"}})

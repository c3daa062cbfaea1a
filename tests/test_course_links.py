"""The notebooks' setup cell installs the course from the repository _config.yml names.

A learner on a fresh Colab runtime gets ``gpipe_core`` by pip-installing REPO
from the setup cell, so a REPO that drifted from ``repository.url`` in
``_config.yml`` (the one place that names the repository) breaks every
notebook there while passing everywhere the package is already installed.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ["01_microbatching", "02_partitioner", "03_scheduler", "04_recomputation", "05_assembling"]
FOUND = sorted(p.parent.name for p in (ROOT / "solutions").glob("*/*.ipynb"))


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

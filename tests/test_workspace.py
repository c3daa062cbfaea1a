"""The instructor folder's paths have one name each (autograder/workspace.py), and nbgrader is given the same ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder import AUTOGRADER_DIR
from autograder.workspace import Workspace


def test_the_workspace_follows_the_environment_at_each_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPIPE_INSTRUCTOR_DIR", str(tmp_path / "a"))
    first = Workspace.from_env()
    monkeypatch.setenv("GPIPE_INSTRUCTOR_DIR", str(tmp_path / "b"))
    assert first.root == (tmp_path / "a").resolve()
    assert Workspace.from_env().submission("ada", "02_partitioner") == (tmp_path / "b/submitted/ada/02_partitioner")
    assert Workspace.from_env().record("02_partitioner", "ada") == (tmp_path / "b/records/02_partitioner/ada.json")
    assert not (tmp_path / "b").exists()  # paths are named, never made


def test_nbgrader_reads_the_same_folders_as_the_grader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from traitlets.config.loader import PyFileConfigLoader

    monkeypatch.setenv("GPIPE_INSTRUCTOR_DIR", str(tmp_path))
    ws = Workspace.from_env()
    config = PyFileConfigLoader("nbgrader_config.py", path=str(AUTOGRADER_DIR)).load_config().CourseDirectory
    assert (config.submitted_directory, config.autograded_directory, config.feedback_directory) == (
        str(ws.submitted), str(ws.autograded), str(ws.feedback))
    assert config.db_url == f"sqlite:///{ws.gradebook}"


def test_no_module_joins_the_instructor_folder_by_hand() -> None:
    users = sorted(str(p.relative_to(AUTOGRADER_DIR)) for p in AUTOGRADER_DIR.rglob("*.py")
                   if "instructor_dir" in p.read_text())
    assert users == ["__init__.py", "workspace.py"], f"name the path in autograder/workspace.py instead: {users}"

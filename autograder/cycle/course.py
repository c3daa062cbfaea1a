"""nbgrader run in this process, the assignments asked for, and the names collected: what every step shares."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import AUTOGRADER_DIR, assignments
from ..workspace import Workspace

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
IGNORED_NAMES = {".ipynb_checkpoints", "__pycache__", ".DS_Store", "__MACOSX"}

log = logging.getLogger("autograder")


class Course:
    """nbgrader's converters bound to this course's configuration and instructor folder."""

    def __init__(self) -> None:
        # nbgrader upgrades an older gradebook by running the `alembic` script next to our Python.
        bindir = str(Path(sys.executable).parent)
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        warnings.filterwarnings("ignore", module="nbgrader")  # its SQLAlchemy usage warns on every submission
        warnings.filterwarnings("ignore", message=".*not in session.*")
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config.loader import PyFileConfigLoader

        self.config = PyFileConfigLoader("nbgrader_config.py", path=str(AUTOGRADER_DIR)).load_config()
        self.coursedir = CourseDirectory(config=self.config)
        self.workspace = Workspace.from_env()
        self.logs = self.workspace.logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.nblog = logging.getLogger("autograder.nbgrader")  # nbgrader's chatter: to instructor/logs/ only
        self.nblog.setLevel(logging.INFO)
        self.nblog.propagate = False
        with self.gradebook():  # create it, then let several grading workers write to it at once
            pass
        with sqlite3.connect(self.workspace.gradebook) as db:
            db.execute("PRAGMA journal_mode=WAL")

    @contextmanager
    def gradebook(self) -> Iterator[Any]:
        from nbgrader.api import Gradebook

        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            yield gb

    def run(self, name: str, app_class: Any, force: bool = True, **attrs: Any) -> bool:
        """Run one nbgrader converter with ``attrs`` set on the course directory; log to instructor/logs/."""
        from nbgrader.utils import capture_log, temp_attrs

        with temp_attrs(self.coursedir, **attrs):
            app = app_class(coursedir=self.coursedir, config=self.config, log=self.nblog)
            app.force = force
            result = capture_log(app)
        text = result.get("log", "") + (("\n" + result["error"]) if result.get("error") else "")
        path = self.logs / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if not result["success"]:
            errors = [ln for ln in text.splitlines() if ln.startswith("[ERROR]")]
            for ln in errors[-3:]:
                log.error("nbgrader %s: %s", name, ln)
            log.error("nbgrader %s did not finish cleanly; full log: %s", name, path)
        return bool(result["success"])

    def generate(self, assignment: str, into: Path | None = None) -> bool:
        """``nbgrader generate_assignment`` (into ``notebooks/`` or ``into``); registers it in the gradebook."""
        from nbgrader.converters import GenerateAssignment

        attrs: dict[str, str] = {"assignment_id": assignment}
        if into is not None:
            attrs["release_directory"] = str(Path(into).resolve())
        return self.run(f"generate-{assignment}", GenerateAssignment, **attrs)

    def registered(self, assignment: str) -> bool:
        from nbgrader.api import MissingEntry

        with self.gradebook() as gb:
            try:
                gb.find_assignment(assignment)
            except MissingEntry:
                return False
            return True


def resolve(names: Iterable[str] | None) -> list[str]:
    known = assignments()
    names = list(names or []) or known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown assignment(s) {unknown}: solutions/ holds {known}")
    return names

"""The instructor's side of the course: release, collect, autograde, feedback, export.

nbgrader keeps the bookkeeping (releases, the gradebook, feedback pages); this
package adds what a class of real, possibly hostile, learners needs:
submissions gathered from a plain folder, every notebook run in a bubblewrap
sandbox under limits (``sandbox/``), scores computed by a trusted judge
that never runs learner code (``judge/``), broken or missing notebooks scored
0 instead of stopping the run, and one log line per student saying what went
wrong. ``README.md`` here has the commands, the threat model and a map of the
folders ("The map"); ``workspace.py`` names every path in the instructor folder.

Paths: the course lives at the repository root (``solutions/`` -> ``notebooks/``);
student work and the gradebook live in the instructor folder, ``instructor/``
(git-ignored). ``GPIPE_INSTRUCTOR_DIR`` moves the instructor folder (tests use a
temporary one); ``GPIPE_COURSE_ROOT`` points the tools at another course tree
with the same layout (used to try the tooling on a throwaway assignment).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AUTOGRADER_DIR = REPO / "autograder"


def course_root() -> Path:
    """The folder holding ``solutions/`` and ``notebooks/``."""
    return Path(os.environ.get("GPIPE_COURSE_ROOT", REPO)).resolve()


def instructor_dir() -> Path:
    """Where submissions, autograded copies, feedback and the gradebook live (never committed)."""
    return Path(os.environ.get("GPIPE_INSTRUCTOR_DIR", course_root() / "instructor")).resolve()


def assignments() -> list[str]:
    """Every assignment with a source notebook, in course order (``solutions/NN_name/``)."""
    src = course_root() / "solutions"
    if not src.is_dir():
        return []
    return sorted(p.name for p in src.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def notebook_names(assignment: str) -> list[str]:
    """The notebooks (without ``.ipynb``) that make up ``assignment``."""
    folder = course_root() / "solutions" / assignment
    if not folder.is_dir():
        raise SystemExit(f"no assignment {assignment!r}: expected a folder {folder} (known: {assignments()})")
    return sorted(p.stem for p in folder.glob("*.ipynb"))

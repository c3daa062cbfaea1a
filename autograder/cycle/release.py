"""Release: the learner notebooks generated from the solutions by nbgrader (``solutions/`` -> ``notebooks/``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .. import course_root
from .course import Course, resolve


def release(names: Iterable[str] | None = None, into: Path | None = None) -> list[Path]:
    """Generate the learner notebooks of ``names`` (default: all) into ``notebooks/`` (or ``into``)."""
    course = Course()
    written = []
    for a in resolve(names):
        if not course.generate(a, into):
            raise SystemExit(f"generate_assignment failed for {a}; see {course.logs / f'generate-{a}.log'}")
        folder = (Path(into) if into else course_root() / "notebooks") / a
        written += sorted(folder.glob("*.ipynb"))
        print(f"released {a} -> {folder}")
    return written

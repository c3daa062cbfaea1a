"""Where an assignment's grading facts come from: its one judge file, found by the assignment's name.

Everything about grading assignment ``NN_name`` is declared in
``autograder/judge/NN_name.py``: its checks (``CHECKS``), what the grading
view blocks (``EXERCISES``) and keeps on purpose (``KEEP``), its limits
(``LIMITS``) and its review rules (``REVIEW``). The grader reads each of them
here, by the assignment's folder name, so adding an assignment edits no table
anywhere else (``tests/test_new_assignment.py`` grades an assignment 09 that
only the course tree knows about).

A course tree outside the repository (``GPIPE_COURSE_ROOT``) brings its own
judges: they are looked up in ``<course root>/autograder/judge/`` first (beside
its ``solutions/`` and ``autograder/planted/``), then in this package.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from .. import course_root
from ..sandbox.limits import DEFAULT, Limits, overridden

PACKAGE_DIR = Path(__file__).resolve().parent
_LOADED: dict[Path, ModuleType] = {}  # judges of other course trees, by file (this package's are in sys.modules)


@dataclass(frozen=True)
class Review:
    """What the review flags in one assignment only, beyond what it flags everywhere (``autograder/review``).

    ``imports``: dotted names (``gpipe_core.runtime``, ``gpipe_core.Runtime``) whose import (``import x``,
    ``from x import ...``, or the last part imported from any gpipe_core module) is flagged, with why.
    ``grader_code``: files of the grader (paths from the course root) whose functions would solve the
    assignment: a learner function alike to one of them is flagged as copied, as gpipe_core's are.
    """

    imports: Mapping[str, str] = field(default_factory=dict)
    grader_code: tuple[str, ...] = ()


def judge_file(assignment: str) -> Path | None:
    """The judge file of ``assignment``: ``<course root>/autograder/judge/<assignment>.py``, else this package's."""
    for folder in (course_root() / "autograder" / "judge", PACKAGE_DIR):
        if (folder / f"{assignment}.py").is_file():
            return (folder / f"{assignment}.py").resolve()
    return None


def load_file(assignment: str, path: Path) -> ModuleType:
    """Execute the judge file at ``path`` as ``autograder.judge.<assignment>`` (not cached)."""
    spec = importlib.util.spec_from_file_location(f"{__package__}.{assignment}", path)
    if spec is None or spec.loader is None:
        raise LookupError(f"{path} is not a Python module: a judge is autograder/judge/{assignment}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def course_judge(assignment: str) -> ModuleType | None:
    """The judge module of ``assignment`` (None when it has none), loaded once per file."""
    path = judge_file(assignment)
    if path is None:
        return None
    if path.parent == PACKAGE_DIR:
        return importlib.import_module(f"{__package__}.{assignment}")
    if path not in _LOADED:
        _LOADED[path] = load_file(assignment, path)
    return _LOADED[path]


def declared(assignment: str, name: str, default: object) -> object:
    """What ``assignment``'s judge declares as ``name``, or ``default`` when it has no judge or no such name."""
    return getattr(course_judge(assignment), name, default)


def review(assignment: str) -> Review:
    """The assignment's own review rules (``REVIEW`` in its judge), or none."""
    rules = declared(assignment, "REVIEW", Review())
    if not isinstance(rules, Review):
        raise TypeError(f"autograder/judge/{assignment}.py: REVIEW must be an autograder.judge.facts.Review, "
                        f"got {type(rules).__name__}")
    return rules


def limits_for(assignment: str | None, environ: dict[str, str] | None = None) -> Limits:
    """The limits for ``assignment``: its judge's ``LIMITS`` (or the default), then the environment's overrides."""
    limits = declared(assignment, "LIMITS", DEFAULT) if assignment else DEFAULT
    if not isinstance(limits, Limits):
        raise TypeError(f"autograder/judge/{assignment}.py: LIMITS must be an autograder.sandbox.limits.Limits, "
                        f"got {type(limits).__name__}")
    return overridden(limits, environ)

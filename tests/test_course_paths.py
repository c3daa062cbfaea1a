"""The flat module paths the notebooks import still work, as the same modules, and stay blocked in a grading view.

gpipe_core's modules live in sub-packages (``engine/``, ``schedules/``...),
while the solution and learner notebooks and the book pages import the flat
paths of before (``gpipe_core.zoo``), and learners hold copies of those
notebooks. ``gpipe_core/_course_paths.py`` maps each old path to its module.
These tests hold it to what it promises:

* every ``gpipe_core`` import written in solutions/, notebooks/ and the book
  pages resolves, with every name it imports;
* an old path is the very module of its new one (so there is one copy of each
  module's state), and importing it leaves that module's own spec alone;
* the repository's own code imports only the new paths (the grading view's
  call graph reads real imports: an alias there would hide an edge);
* in a built grading view, a blocked function imported through an old path
  still raises the view's ``NotImplementedError("graded: ...")``.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gpipe_core
from autograder.judge import view
from gpipe_core import _course_paths

ROOT = Path(__file__).resolve().parents[1]
IMPORT = re.compile(r"^\s*(?:from\s+(gpipe_core[\w.]*)\s+import\s+([^#\n]+)|import\s+(gpipe_core[\w.]*))", re.M)


def _learner_text() -> dict[str, str]:
    """The code learners read: every notebook's code cells, and every book page (markdown or notebook)."""
    out = {}
    files = [*ROOT.glob("solutions/*/*.ipynb"), *ROOT.glob("notebooks/*/*.ipynb"), *ROOT.glob("book/**/*.ipynb")]
    for path in files:
        if "_build" not in path.parts:
            cells = json.loads(path.read_text())["cells"]
            code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
            out[str(path.relative_to(ROOT))] = "\n".join(code)
    for path in ROOT.glob("book/**/*.md"):
        if "_build" not in path.parts:
            out[str(path.relative_to(ROOT))] = path.read_text()
    return out


def learner_imports() -> list[tuple[str, str, tuple[str, ...]]]:
    """(file, module, names imported from it) for each gpipe_core import the learners' code writes."""
    found = []
    for file, text in _learner_text().items():
        for match in IMPORT.finditer(text):
            module = match.group(1) or match.group(3)
            names = match.group(2) or ""
            names = () if "(" in names or "\\" in names else tuple(
                n.strip().split(" as ")[0] for n in names.split(",") if n.strip())
            found.append((file, module, names))
    return found


def test_the_learners_code_imports_the_flat_paths_this_table_keeps() -> None:
    modules = {m for _, m, _ in learner_imports()}
    assert {"gpipe_core.zoo", "gpipe_core.models", "gpipe_core.theory", "gpipe_core.distributed"} <= modules
    old = {m.split(".")[1] for m in modules if m.count(".") == 1} - {"distributed"}
    missing = old - set(_course_paths.MOVED)
    assert not missing, f"flat paths the notebooks import that _course_paths.MOVED lacks: {missing}"


def test_every_import_in_the_notebooks_and_book_pages_resolves() -> None:
    for file, module, names in learner_imports():
        imported = importlib.import_module(module)
        for name in names:
            assert name == "*" or hasattr(imported, name), f"{file}: from {module} import {name}: no such name"


@pytest.mark.parametrize("old", sorted(_course_paths.MOVED))
def test_an_old_path_is_the_same_module_as_its_new_one(old: str) -> None:
    new = importlib.import_module(f"gpipe_core.{_course_paths.MOVED[old]}")
    assert importlib.import_module(f"gpipe_core.{old}") is new
    assert getattr(gpipe_core, old) is new  # after a bare `import gpipe_core`, as before the grouping
    assert new.__spec__.name == new.__name__ == f"gpipe_core.{_course_paths.MOVED[old]}"  # its own spec, kept


def test_a_name_that_never_was_a_module_is_still_an_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("gpipe_core.no_such_module")
    with pytest.raises(AttributeError, match="no attribute 'no_such_module'"):
        gpipe_core.no_such_module  # noqa: B018


LEARNER_CODE = {"tests/helpers/view_attacks.py"}  # attacks written as a learner would: through the flat paths too


def test_the_repository_imports_only_the_new_paths() -> None:
    old = set(_course_paths.MOVED)
    paths = [p for folder in ("gpipe_core", "autograder", "tests", "benchmarks") for p in (ROOT / folder).rglob("*.py")]
    paths += [p for p in (ROOT / "book").rglob("*.py") if "_build" not in p.parts]
    paths = [p for p in paths if str(p.relative_to(ROOT)) not in LEARNER_CODE]
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "gpipe_core" and not node.level:
                names = [f"gpipe_core.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names
                      if n.startswith("gpipe_core.") and n.split(".")[1] in old]
    assert found == [], "import these from their sub-package (gpipe_core/_course_paths.py, MOVED):\n" + "\n".join(found)


# (assignment, the flat path a notebook imports, a function the view blocks there, a call of it)
BLOCKED = [("01_microbatching", "microbatch", "split", "torch.zeros(4, 2), 2"),
           ("03_scheduler", "schedule", "gpipe_schedule", "4, 2"),
           ("05_assembling", "theory", "bubble_fraction", "4, 2"),
           ("07_beat_the_bubble", "zoo", "zb_h1_schedule", "4, 2")]


@pytest.mark.parametrize(("assignment", "old", "function", "call"), BLOCKED)
def test_a_blocked_function_stays_blocked_through_its_old_path(assignment: str, old: str, function: str, call: str,
                                                               tmp_path: Path) -> None:
    root = view.build_view(assignment, tmp_path / "view")
    script = textwrap.dedent(f"""
        import importlib, torch, gpipe_core
        from gpipe_core.{old} import {function} as imported
        import gpipe_core.{old} as old
        new = importlib.import_module("gpipe_core.{_course_paths.MOVED[old]}")
        assert gpipe_core.__file__.startswith({str(root)!r}), gpipe_core.__file__
        assert gpipe_core.__grading_view__ == {assignment!r} and old is new is gpipe_core.{old}
        for fn in (imported, old.{function}, new.{function}, gpipe_core._course_paths.resolve({old!r}).{function}):
            try:
                fn({call})
            except NotImplementedError as exc:
                assert str(exc).startswith("graded: "), exc
            else:
                raise SystemExit(f"{{fn.__module__}}.{function} ran in the view of {assignment}")
        print("blocked")
    """)
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "blocked", done.stderr

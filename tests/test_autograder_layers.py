"""The grader's folders are layers: a module imports only its own folder, the folders below it, and the shared paths.

From the bottom: ``sandbox/`` (isolation and limits) < ``judge/`` (scores from
plain data) < ``review/`` (flags and holds; reads definitions as the judge
does) < ``cycle/`` (release, collect, grade, publish: it wires the others
together) < ``selftest/`` (the grader's own test classes). ``__main__`` (the
command) may import any of them; the top-level ``autograder`` (paths) and
``autograder.workspace`` (the instructor folder) may be imported by all and
import no folder. A lower layer that needs something of a higher one takes it
as an argument (``judge.grade_submission(..., review=...)``). Every import
counts, function-level ones and ``importlib.import_module("autograder...")``
included, so a deferred import cannot hide a cycle between layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "autograder"
LAYERS = ["sandbox", "judge", "review", "cycle", "selftest"]  # bottom first
SHARED = {"autograder", "autograder.workspace"}  # importable from anywhere
TOP_LEVEL = {"__init__", "workspace", "nbgrader_config", "__main__"}  # the only modules outside a folder


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def imports(name: str, source: str, package: bool) -> list[tuple[int, str]]:
    """(line, module) for every ``autograder`` module that ``source`` (module ``name``) imports, anywhere in it."""
    here = name.split(".") if package else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if is_module(sub) else base))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return [(line, m) for line, m in found if m == "autograder" or m.startswith("autograder.")]


def part(name: str) -> str:
    """The folder a module belongs to, or its own name for a top-level module."""
    return name.split(".")[1] if "." in name else "__init__"


def breaks(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported`` (None when the layering allows it)."""
    mine, theirs = part(importer), part(imported)
    if imported in SHARED or mine == theirs or mine == "__main__":
        return None
    if mine not in LAYERS:
        return f"{importer} is shared by every layer and may import only {sorted(SHARED)}"
    if theirs not in LAYERS:
        return f"{imported} is not a layer's module (only {sorted(SHARED)} are shared)"
    if LAYERS.index(theirs) > LAYERS.index(mine):
        return f"upward: {mine}/ sits below {theirs}/ ({' < '.join(LAYERS)}): pass the function in instead"
    return None


def every_module() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "planted" not in p.parts)


def test_every_module_sits_in_a_layer_or_is_one_of_the_few_top_level_ones() -> None:
    stray = [str(p.relative_to(ROOT)) for p in every_module()
             if (len(p.relative_to(ROOT).parts) == 1 and p.stem not in TOP_LEVEL)
             or (len(p.relative_to(ROOT).parts) > 1 and p.relative_to(ROOT).parts[0] not in LAYERS)]
    assert not stray, f"put each of {stray} in one of {LAYERS} (autograder/README.md, 'The map')"


def test_no_module_imports_upward_or_from_outside_the_layers() -> None:
    wrong = []
    for path in every_module():
        name = module_name(path)
        for line, imported in imports(name, path.read_text(), path.name == "__init__.py"):
            why = breaks(name, imported)
            if why:
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line} imports {imported}: {why}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(("name", "source", "allowed"), [
    ("autograder.judge.grade", "def f():\n    from ..review.run import review_submission\n", False),
    ("autograder.judge.grade", "import importlib\nimportlib.import_module('autograder.cycle.jobs')\n", False),
    ("autograder.sandbox.launch", "from ..judge import probe_io\n", False),
    ("autograder.workspace", "from .cycle import course\n", False),
    ("autograder.review.run", "from ..judge.extract import extract\n", True),
    ("autograder.cycle.jobs", "from ..workspace import Workspace\nfrom .. import notebook_names\n", True),
    ("autograder.__main__", "from .selftest import fakeclass\n", True),
])
def test_the_walk_sees_function_level_and_string_imports(name: str, source: str, allowed: bool) -> None:
    found = imports(name, source, package=False)
    assert found, "the walk missed the import"
    assert all(breaks(name, m) is None for _, m in found) == allowed, found

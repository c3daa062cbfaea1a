"""The learner's definitions, and only those, as a module the probe can load.

A notebook is a script: a cell can install an IPython hook, patch torch or
start a thread as a side effect of being run. The probe must load the
learner's *work* without any of that, so this module keeps, from each solution
cell (the cells the nbgrader source marks ``solution``; their text is taken
from the submission by grade id), only:

* functions and classes in which nothing learner-written runs while they are
  defined: decorators only from trusted imports (``functools``, ``torch``,
  ``dataclasses``...) or ``staticmethod``/``classmethod``/``property``, never
  a name the learner defines; defaults and class attributes are literals or
  names; class bodies hold only methods, literal assignments and docstrings;
  no metaclass, no enum base, and no class hook that runs at definition or
  subscription (``__init_subclass__``, ``__set_name__``, ``__class_getitem__``,
  ``__mro_entries__``, ``__prepare__``); annotations are never evaluated
  (``from __future__ import annotations`` heads the module);
* imports of an allow-list of modules (computation only: no ``os``, ``sys``,
  ``importlib``, ``builtins``, ``IPython``...);
* constants (``NAME = literal``) and type aliases (``Schedule = list[list[Action]]``)
  that subscript no class the learner defines.

A refused definition is reported with its cell and line (``dropped``, and
``refused`` by name, so a check that misses it says why); only the exercises
it defines lose their points.

Everything else is dropped and reported. Function bodies are not restricted:
they run in the sandboxed probe, and what they return is only data to the judge.
Before the learner's code comes a trusted prelude taken from the course's own
source notebook: its imports, aliases and the locked helper cells' functions.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .. import course_root, notebook_names
from .load_rules import Names, alias, bind, class_problem, function_problem, load_time_names, subscripts_learner

ALLOWED_IMPORTS = {
    "abc", "bisect", "collections", "copy", "dataclasses", "decimal", "enum", "fractions", "functools", "heapq",
    "itertools", "math", "numbers", "operator", "random", "statistics", "time", "typing", "numpy", "torch",
    "gpipe_core", "contextlib", "__future__",
}
PRELUDE_SKIP = {"matplotlib", "IPython", "ipywidgets", "importlib", "subprocess", "sys", "os", "signal", "tempfile",
                "pathlib"}  # the source notebook's imports the probe never needs (slow, or not for learner code)


@dataclass
class Extracted:
    source: str  # the probe module
    defined: list[str] = field(default_factory=list)  # names the learner's cells define
    dropped: list[str] = field(default_factory=list)  # what was left out, one line each
    cells: dict[str, str] = field(default_factory=dict)  # grade id -> the learner's cell text
    refused: dict[str, str] = field(default_factory=dict)  # a definition left out -> why (cell and line)


def source_notebook(assignment: str) -> Any:
    (name,) = notebook_names(assignment)[:1]
    return nbformat.read(course_root() / "solutions" / assignment / f"{name}.ipynb", as_version=4)


def _meta(cell: Any) -> dict:
    """A cell's nbgrader metadata, or {} when a submission put anything else there."""
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def _to_python(text: str) -> str:
    """IPython syntax (magics, ``!shell``) turned into Python calls, which are then dropped as statements."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(text)
    except Exception:  # noqa: BLE001 - fall back to the raw text; a SyntaxError is reported below
        return text


def _root(module: str | None) -> str:
    return (module or "").split(".")[0]


def _keep(node: ast.stmt, trusted: bool, names: Names | None = None) -> tuple[bool, str | None]:
    """Whether ``node`` goes into the probe module, and why not."""
    names = names or Names()
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        roots = {_root(a.name) for a in node.names} if isinstance(node, ast.Import) else {_root(node.module)}
        if isinstance(node, ast.ImportFrom) and node.level:
            return False, "a relative import"
        if trusted:
            return not roots & PRELUDE_SKIP and "gpipe_core.grading" not in ast.unparse(node), None
        bad = sorted(roots - ALLOWED_IMPORTS)
        return (False, f"import of {', '.join(bad)} (allowed: {', '.join(sorted(ALLOWED_IMPORTS))})") if bad \
            else (True, None)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        problem = function_problem(node, names)
        return problem is None, problem
    if isinstance(node, ast.ClassDef):
        problem = class_problem(node, names)
        return problem is None, problem
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if node.value is not None and all(isinstance(t, ast.Name) for t in targets) and alias(node.value):
            if subscripts_learner(node.value, names):
                return False, "a type alias that subscripts a class you define (its __class_getitem__ would run)"
            return True, None
        return False, "an assignment of something other than a constant or a type alias"
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return False, None  # a docstring or a bare literal
    return False, f"a top-level {type(node).__name__} statement"


def _prelude(assignment: str) -> list[ast.stmt]:
    """The course's own imports, aliases and locked helpers (from solutions/, never from the submission)."""
    out: list[ast.stmt] = []
    before_exercises = True  # aliases count only from the cells before the first exercise (not demo code)
    for cell in source_notebook(assignment).cells:
        meta = _meta(cell)
        before_exercises = before_exercises and not meta.get("solution")
        if cell.cell_type != "code" or meta.get("solution") or meta.get("grade"):
            continue
        try:
            tree = ast.parse(_to_python(cell.source))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not meta.get("locked"):
                continue  # demo code of unlocked cells is not part of the learner's work
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and not (before_exercises and alias(node.value)):
                continue
            if _keep(node, trusted=True)[0]:
                out.append(node)
    return out


def extract(assignment: str, submission: Path | Any) -> Extracted:
    """The probe module for ``submission`` (a path or a notebook node) of ``assignment``."""
    nb = nbformat.read(submission, as_version=4) if isinstance(submission, (str, Path)) else submission
    solution_ids = [_meta(c)["grade_id"] for c in source_notebook(assignment).cells if _meta(c).get("solution")]
    found: dict[str, str] = {}
    for cell in nb.cells:
        gid = _meta(cell).get("grade_id")
        if cell.get("cell_type") == "code" and gid in solution_ids and gid not in found:
            found[gid] = cell.get("source", "")
    result = Extracted(source="", cells=found)
    learner: list[ast.stmt] = []
    names = Names()
    prelude = _prelude(assignment)
    for node in prelude:
        bind(node, names, learner=False)
    for gid in solution_ids:
        if gid not in found:
            result.dropped.append(f"cell {gid}: missing from the submission")
            continue
        try:
            tree = ast.parse(_to_python(found[gid]))
        except SyntaxError as exc:
            result.dropped.append(f"cell {gid}: does not parse (line {exc.lineno}: {exc.msg}), so nothing in it counts")
            continue
        for node in tree.body:
            keep, why = _keep(node, trusted=False, names=names)
            missing = sorted(load_time_names(node) & set(result.refused)) if keep else []
            if missing:  # e.g. a subclass of a refused class: loading it would fail, and so would the module
                keep, why = False, f"it needs {', '.join(missing)} while it loads, which was refused"
            if keep:
                learner.append(node)
                bind(node, names, learner=True)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    result.defined.append(node.name)
            elif why:
                result.dropped.append(f"cell {gid}, line {node.lineno}: {why} is not run when grading "
                                      "(only functions, classes, allowed imports and constants are)")
                bound = [node.name] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else \
                    [t.id for t in getattr(node, "targets", [getattr(node, "target", None)]) if isinstance(t, ast.Name)]
                result.refused.update({name: f"cell {gid}, line {node.lineno}: {why}" for name in bound})
    header = ("# Generated by autograder.judge.extract: the course's prelude, then the learner's definitions.\n"
              "from __future__ import annotations\n\nDEVICE = 'cpu'\n")
    nodes = [n for n in prelude + learner
             if not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    body = ast.Module(body=nodes, type_ignores=[])
    result.source = header + ast.unparse(body) + "\n"
    return result

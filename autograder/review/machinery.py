"""Flags for code that reaches for grading machinery anywhere in the notebook, run or not.

Statements around the definitions never reach the probe (the extractor drops
them), so they cannot change a score; a learner who writes them is still
trying something an instructor should know about: code objects,
``sys.modules``, ``builtins``, IPython's input transformers and events,
torch's testing functions, gpipe_core's private names, or the engine's own
versions of what the assignment asks for, and the imports the assignment's
judge names in its ``REVIEW`` (05's: the engine's executor, which it asks
learners to write). Each flag names the cell and line. Cells that are the
course's own, unchanged, are skipped; the scan stops after ``MAX_SCAN_CHARS``.
"""

from __future__ import annotations

import ast
from typing import Any

from ..judge import extract as ex
from ..judge import facts, view
from .definitions import parse_cell
from .findings import Finding, flag

MAX_SCAN_CHARS = 2_000_000
SUSPECT_ATTRIBUTES = {
    "__code__": "replaces or reads a function's code object", "__globals__": "reaches into a function's globals",
    "__builtins__": "touches builtins", "modules": "touches sys.modules", "_getframe": "inspects the call stack",
    "input_transformers_cleanup": "installs an IPython input transformer",
    "input_transformers_post": "installs an IPython input transformer",
    "assert_close": "touches torch.testing.assert_close", "learner_only": "touches the old grading guard",
    "settrace": "installs a tracer", "setprofile": "installs a profiler hook",
}
SUSPECT_MODULES = {"builtins": "imports builtins", "importlib": "imports importlib (reload, module surgery)",
                   "gc": "imports gc (object surgery)", "ctypes": "imports ctypes", "inspect": "imports inspect",
                   "autograder": "imports the grader", "IPython": "imports IPython internals"}
EVENTS = {"pre_run_cell", "post_run_cell", "pre_execute", "post_execute"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _ruled(dotted: str, rules: facts.Review) -> list[str]:
    """Why ``dotted`` (a module, or a name imported from one) is one of the assignment's flagged imports."""
    return [why for name, why in rules.imports.items() if dotted == name or dotted.startswith(name + ".")]


def _imports(node: ast.Import | ast.ImportFrom, graded: set[str], rules: facts.Review) -> list[str]:
    out = []
    for name in [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]:
        if name.split(".")[0] in SUSPECT_MODULES:
            out.append(SUSPECT_MODULES[name.split(".")[0]])
        if name.startswith("gpipe_core.grading") or name == "torch.testing":
            out.append(f"imports {name}")
        out += _ruled(name, rules)
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gpipe_core"):
        for alias in node.names:
            if alias.name.startswith("_"):
                out.append(f"imports gpipe_core's private {alias.name}")
            if alias.name in graded:
                out.append(f"uses gpipe_core's own {alias.name}")
            out += _ruled(f"{node.module}.{alias.name}", rules) + _ruled(f"gpipe_core.{alias.name}", rules)
    return out


def _attribute(node: ast.Attribute, graded: set[str]) -> list[str]:
    out = []
    dotted = _dotted(node)
    reason = SUSPECT_ATTRIBUTES.get(node.attr)
    if reason and not (node.attr == "modules" and not dotted.startswith("sys")):
        out.append(reason)
    if (node.attr in graded and "gpipe_core" in dotted) or (node.attr == "checkpoint" and "torch.utils" in dotted):
        out.append(f"uses {dotted}")
    if dotted.startswith("gpipe_core") and node.attr.startswith("_") and not node.attr.startswith("__"):
        out.append(f"uses gpipe_core's private {dotted}")
    if dotted.startswith("torch.testing") or (dotted in ("torch.equal", "torch.allclose")
                                              and isinstance(node.ctx, ast.Store)):
        out.append(f"touches {dotted}")
    return out


def reasons(tree: ast.AST, graded: set[str], rules: facts.Review) -> list[tuple[int, str]]:
    """(line, reason) for each way ``tree`` touches grading machinery (``rules``: the assignment's own)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out += [(line, r) for r in _imports(node, graded, rules)]
        elif isinstance(node, ast.Attribute):
            out += [(line, r) for r in _attribute(node, graded)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in EVENTS:
            out.append((line, f"registers an IPython {node.value} hook"))
        elif isinstance(node, ast.Name) and node.id == "get_ipython":
            out.append((line, "calls get_ipython()"))
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                dotted = _dotted(target)
                if dotted.startswith(("torch.", "builtins.", "gpipe_core.", "nn.", "F.")) and dotted.count("."):
                    out.append((line, f"assigns {dotted} (monkeypatching)"))
    return out


def suspicious(tree: ast.AST, graded_names: set[str], rules: facts.Review | None = None) -> list[str]:
    """Reasons this code touches grading machinery (one per kind); ``rules``: an assignment's own (none)."""
    return list(dict.fromkeys(r for _, r in reasons(tree, graded_names, rules or facts.Review())))


def graded_names(assignment: str) -> set[str]:
    """The short names of the engine functions (and their classes) the assignment's exercises mirror."""
    try:
        names = view.graded(assignment)
    except KeyError:
        return set()
    out = {n.split(".")[-1] for n in names} - {"forward", "backward"}
    return out | {n.split(".")[-2] for n in names if n.count(".") >= 2 and n.split(".")[-2][:1].isupper()}


def machinery(assignment: str, nb: Any) -> list[Finding]:
    """A flag per (cell, reason) where a changed code cell touches grading machinery."""
    course = {c.source for c in ex.source_notebook(assignment).cells}
    graded, rules, out, scanned = graded_names(assignment), facts.review(assignment), [], 0
    for i, cell in enumerate(nb.cells):
        text = cell.get("source", "")
        if cell.get("cell_type") != "code" or text in course:
            continue
        where = f"cell {ex._meta(cell).get('grade_id') or i}"
        scanned += len(text)
        if scanned > MAX_SCAN_CHARS:
            out.append(flag("size", where, f"the notebook's code passes {MAX_SCAN_CHARS:,} characters; "
                                                     "the rest was not scanned for grading machinery"))
            break
        tree = parse_cell(text)
        if tree is None:
            continue
        seen: set[str] = set()
        for line, reason in reasons(tree, graded, rules):
            if reason not in seen:
                seen.add(reason)
                out.append(flag("machinery", f"{where}, line {line}", reason))
    return out

"""Flags for review: what grading cannot prevent, it lists for the instructor to read.

The judge scores only what the learner's own definitions compute on its
inputs, so tricks inside the notebook change no score. Two things remain that
only a person can judge, and this audit finds them (AST and similarity, no
execution):

* **touching grading machinery** anywhere in the notebook: code objects,
  ``sys.modules``, ``builtins``, IPython's input transformers and events,
  torch's testing functions, the old in-kernel guard, gpipe_core's private
  names, the engine's own versions of what the assignment asks for;
* **copied code**: a function near-identical to gpipe_core's implementation of
  the same part (the engine is open, so copying it can only be detected), or to
  a classmate's function (unless both are the course's published solution).

Each flag is one line, "flagged for review: <reason>"; a flag never changes a
score. ``review_rows`` turns them into rows for the review CSV.
"""

from __future__ import annotations

import ast
import difflib
import io
import keyword
import tokenize
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import nbformat

from .judge.extract import source_notebook
from .judge.view import PACKAGE, graded

SIMILAR = 0.9  # token similarity from which two functions count as copies
MIN_TOKENS = 40  # shorter functions look alike by necessity
SUSPECT_ATTRIBUTES = {
    "__code__": "replaces or reads a function's code object", "__globals__": "reaches into a function's globals",
    "__builtins__": "touches builtins", "modules": "touches sys.modules", "_getframe": "inspects the call stack",
    "input_transformers_cleanup": "installs an IPython input transformer",
    "input_transformers_post": "installs an IPython input transformer", "register": None,
    "assert_close": "touches torch.testing.assert_close", "learner_only": "touches the old grading guard",
    "settrace": "installs a tracer", "setprofile": "installs a profiler hook",
}
SUSPECT_MODULES = {"builtins": "imports builtins", "importlib": "imports importlib (reload, module surgery)",
                   "gc": "imports gc (object surgery)", "ctypes": "imports ctypes", "inspect": "imports inspect",
                   "autograder": "imports the grader", "IPython": "imports IPython internals"}
EVENTS = {"pre_run_cell", "post_run_cell", "pre_execute", "post_execute"}
RUNTIME = "uses the engine's own executor (gpipe_core.runtime), which 05 asks learners to write"


def _blocked(assignment: str) -> tuple[str, ...]:
    try:
        return graded(assignment)
    except KeyError:
        return ()


def _code_cells(nb: Any) -> list[tuple[str, str]]:
    return [(c.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell {i}", c.get("source", ""))
            for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"]


def _parse(text: str) -> ast.Module | None:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        text = TransformerManager().transform_cell(text)
    except Exception:  # noqa: BLE001 - fall back to the raw text
        pass
    try:
        return ast.parse(text)
    except SyntaxError:
        return None


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def suspicious(tree: ast.Module, graded_names: set[str]) -> list[str]:
    """Reasons this code touches grading machinery (one per kind)."""
    found: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                root = name.split(".")[0]
                if root in SUSPECT_MODULES:
                    found[SUSPECT_MODULES[root]] = None
                if name.startswith("gpipe_core.grading") or name == "torch.testing":
                    found[f"imports {name}"] = None
                if name.startswith("gpipe_core.runtime"):
                    found[RUNTIME] = None
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gpipe_core"):
                for alias in node.names:
                    if alias.name.startswith("_"):
                        found[f"imports gpipe_core's private {alias.name}"] = None
                    if alias.name in graded_names:
                        found[f"uses gpipe_core's own {alias.name}"] = None
                    if alias.name in ("Runtime", "runtime"):
                        found[RUNTIME] = None
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            reason = SUSPECT_ATTRIBUTES.get(node.attr)
            if reason and not (node.attr == "modules" and not dotted.startswith("sys")):
                found[reason] = None
            if node.attr in graded_names and "gpipe_core" in dotted or dotted.split(".")[-1:] == ["checkpoint"] and \
                    "torch.utils" in dotted:
                found[f"uses {dotted}"] = None
            if dotted.startswith("gpipe_core") and node.attr.startswith("_") and not node.attr.startswith("__"):
                found[f"uses gpipe_core's private {dotted}"] = None
            if dotted.startswith("torch.testing") or dotted in ("torch.equal", "torch.allclose") and isinstance(
                    getattr(node, "ctx", None), ast.Store):
                found[f"touches {dotted}"] = None
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in EVENTS:
            found[f"registers an IPython {node.value} hook"] = None
        elif isinstance(node, ast.Name) and node.id == "get_ipython":
            found["calls get_ipython()"] = None
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                dotted = _dotted(target)
                if dotted.startswith(("torch.", "builtins.", "gpipe_core.", "nn.", "F.")) and dotted.count("."):
                    found[f"assigns {dotted} (monkeypatching)"] = None
    return list(found)


def _tokens(node: ast.AST) -> list[str]:
    """The function's tokens with names, strings and docstrings normalised (renaming hides nothing)."""
    node = ast.parse(ast.unparse(node)).body[0]  # comments and layout gone
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and ast.get_docstring(node):
        node.body = node.body[1:] or [ast.Pass()]
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(ast.unparse(node)).readline):
        if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
            out.append("ID")
        elif tok.type == tokenize.STRING:
            out.append("STR")
        elif tok.type in (tokenize.OP, tokenize.NUMBER) or keyword.iskeyword(tok.string):
            out.append(tok.string)
    return out


def similarity(a: list[str], b: list[str]) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _functions(tree: ast.Module) -> dict[str, ast.AST]:
    out: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = node
    return out


@cache
def engine_functions(assignment: str) -> dict[str, list[str]]:
    """Tokens of gpipe_core's implementations of what ``assignment`` asks for (``module.name``)."""
    out = {}
    for name in _blocked(assignment):
        parts = name.split(".")
        for split in range(len(parts) - 1, 0, -1):
            file = PACKAGE.joinpath(*parts[:split]).with_suffix(".py")
            if file.exists():
                body: Any = ast.parse(file.read_text())
                for part in parts[split:-1]:
                    body = next(n for n in body.body if isinstance(n, ast.ClassDef) and n.name == part)
                node = _functions(body).get(parts[-1])
                if node is not None:
                    out[name] = _tokens(node)
                break
    return out


@cache
def published(assignment: str) -> list[list[str]]:
    """Tokens of the course's own solution functions (public: alike by design, not a copy of a classmate)."""
    nb = source_notebook(assignment)
    for cell in nb.cells:
        cell.source = "\n".join(ln for ln in cell.source.splitlines() if "### " not in ln)
    return list(_solution_functions(assignment, nb).values())


def _defs(tree: ast.Module) -> dict[str, list[str]]:
    """Tokens of each function, class and method (``Class.method``) defined at the top of ``tree``."""
    out = {}
    for name, node in _functions(tree).items():
        out[name] = _tokens(node)
        for sub in getattr(node, "body", []) if isinstance(node, ast.ClassDef) else []:
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out[f"{name}.{sub.name}"] = _tokens(sub)
    return out


def _solution_functions(assignment: str, nb: Any) -> dict[str, list[str]]:
    ids = {c.metadata.get("nbgrader", {}).get("grade_id") for c in source_notebook(assignment).cells
           if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    out = {}
    for gid, text in _code_cells(nb):
        tree = _parse(text) if gid in ids else None
        out.update(_defs(tree) if tree else {})
    return out


def audit(assignment: str, notebook: Path | Any, classmates: Mapping[str, Path | Any] | None = None) -> list[str]:
    """Every reason to review this submission, one line each; empty when nothing stands out."""
    nb = nbformat.read(notebook, as_version=4) if isinstance(notebook, (str, Path)) else notebook
    course = {c.source for c in source_notebook(assignment).cells}
    graded = {n.split(".")[-1] for n in _blocked(assignment)} - {"forward", "backward"}
    if any(n.startswith("checkpoint.Recompute") for n in _blocked(assignment)):
        graded.add("Recompute")
    flags: list[str] = []
    for where, text in _code_cells(nb):
        if text in course:
            continue  # the course's own cell, unchanged
        tree = _parse(text)
        for reason in suspicious(tree, graded) if tree else []:
            flags.append(f"flagged for review: {where} {reason}")
    mine = _solution_functions(assignment, nb)
    for name, tokens in mine.items():
        if len(tokens) < MIN_TOKENS:
            continue
        best_published = max((similarity(tokens, p) for p in published(assignment)), default=0.0)
        for ref, ref_tokens in engine_functions(assignment).items():
            score = similarity(tokens, ref_tokens)
            if score >= SIMILAR and score > best_published:
                flags.append(f"flagged for review: {name} is near-identical to gpipe_core's {ref} "
                             f"(similarity {score:.2f})")
    for other, path in (classmates or {}).items():
        theirs = _solution_functions(assignment, nbformat.read(path, as_version=4)
                                     if isinstance(path, (str, Path)) else path)
        for name, tokens in mine.items():
            if name not in theirs or len(tokens) < MIN_TOKENS:
                continue
            score = similarity(tokens, theirs[name])
            if score >= SIMILAR and max((similarity(tokens, p) for p in published(assignment)), default=0) < SIMILAR:
                flags.append(f"flagged for review: {name} is near-identical to {other}'s (similarity {score:.2f})")
    return flags


def audit_class(assignment: str, notebooks: Mapping[str, Path]) -> dict[str, list[str]]:
    """``audit`` for every student of one assignment, each compared with all the others."""
    loaded = {}
    for student, path in notebooks.items():
        try:
            loaded[student] = nbformat.read(path, as_version=4)
        except Exception:  # noqa: BLE001 - an unreadable notebook is reported by collection, not here
            continue
    return {s: audit(assignment, nb, {o: other for o, other in loaded.items() if o != s})
            for s, nb in loaded.items()}


def review_rows(assignment: str, flags: Mapping[str, list[str]]) -> list[dict[str, str]]:
    """Rows for the review CSV: student, assignment, reason."""
    return [{"student": s, "assignment": assignment, "reason": f.removeprefix("flagged for review: ")}
            for s, fs in sorted(flags.items()) for f in fs]

"""The learner's definitions, read exactly as the probe loads them, and nothing else.

The old review read every cell in notebook order while the extractor reads the
first cell of each grade id in the course's order: a decoy definition placed
later in the notebook, or a second cell with the same grade id, made the two
look at different code. Here the review starts from
:func:`autograder.judge.extract.extract` itself: its ``cells`` (the first cell
of each grade id), parsed and filtered by the extractor's own rule, in the
extractor's order. Python keeps the last definition of a name, so that is the
one compared.

A notebook a learner's editor (or a learner) bent out of shape, with metadata
that is a string or cells that are not objects, is first made readable here,
and each repair is a finding of that submission alone.
"""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import nbformat

from ..judge import extract as ex
from .findings import Finding, flag

MAX_REVIEW_CHARS = 500_000  # learner solution-cell text beyond which nothing is parsed: the submission is held


@dataclass(frozen=True)
class Definition:
    """One function or method the probe loads: ``name`` is ``f`` or ``Class.method``."""

    name: str
    cell: str
    node: ast.FunctionDef | ast.AsyncFunctionDef

    @property
    def where(self) -> str:
        return f"{self.name} (cell {self.cell}, line {self.node.lineno})"


@cache
def solution_ids(assignment: str) -> tuple[str, ...]:
    """The grade ids of the assignment's solution cells, in the course's order (the extractor's)."""
    return tuple(ex._meta(c)["grade_id"] for c in ex.source_notebook(assignment).cells if ex._meta(c).get("solution"))


def load(notebook: Path | str | Any) -> tuple[Any, list[Finding]]:
    """The notebook (a path or a node) as a node the extractor can read, and a finding per repair made."""
    raw = nbformat.read(notebook, as_version=4) if isinstance(notebook, (str, Path)) else notebook
    findings: list[Finding] = []
    cells = raw.get("cells") if isinstance(raw, dict) else None
    if not isinstance(cells, list):
        findings.append(flag("malformed", "notebook", f"has no list of cells ({type(cells).__name__}): nothing read"))
        cells = []
    kept = []
    for i, cell in enumerate(cells):
        where = f"cell {i}"
        if not isinstance(cell, dict):
            findings.append(flag("malformed", where, f"is a {type(cell).__name__}, not a cell; ignored"))
            continue
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if not isinstance(source, str):
            findings.append(flag("malformed", where, f"source is a {type(source).__name__}; read as empty"))
            source = ""
        meta = cell.get("metadata", {})
        if not isinstance(meta, dict):
            findings.append(flag("malformed", where, f"metadata is a {type(meta).__name__}; ignored"))
            meta = {}
        grading = meta.get("nbgrader")
        if grading is not None and not (isinstance(grading, dict) and isinstance(grading.get("grade_id", ""), str)):
            what = f"is a {type(grading).__name__}" if not isinstance(grading, dict) else \
                f"has a grade_id that is a {type(grading.get('grade_id')).__name__}"
            findings.append(flag("malformed", where, f"nbgrader metadata {what}; the cell counts as ungraded"))
            meta = {k: v for k, v in meta.items() if k != "nbgrader"}
        kept.append({"cell_type": str(cell.get("cell_type", "")), "source": source, "metadata": dict(meta)})
    return nbformat.from_dict({"cells": kept, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}), findings


def duplicates(assignment: str, nb: Any) -> list[Finding]:
    """A solution cell's grade id on several cells: the extractor (and so the score) reads only the first."""
    ids = Counter(ex._meta(c).get("grade_id") for c in nb.cells if c.get("cell_type") == "code")
    return [flag("duplicate-cell", f"cell {gid}", f"appears {n} times; only the first is graded and reviewed")
            for gid in solution_ids(assignment) if (n := ids.get(gid, 0)) > 1]


def solution_text(assignment: str, nb: Any) -> int:
    """Characters in the cells the extractor reads (the first cell of each solution grade id)."""
    seen: dict[str, int] = {}
    for cell in nb.cells:
        gid = ex._meta(cell).get("grade_id")
        if cell.get("cell_type") == "code" and gid in solution_ids(assignment) and gid not in seen:
            seen[gid] = len(cell.get("source", ""))
    return sum(seen.values())


@lru_cache(maxsize=4)
def parse_cell(text: str) -> ast.Module | None:
    """A cell as the extractor parses it (IPython syntax turned into calls), or None; shared, never to be changed."""
    try:
        return ast.parse(ex._to_python(text))
    except (SyntaxError, ValueError):
        return None


def statements(assignment: str, extracted: Any) -> list[tuple[str, ast.stmt]]:
    """(grade id, statement) for every top-level statement the probe module keeps from the learner, in its order."""
    out = []
    for gid in solution_ids(assignment):
        tree = parse_cell(extracted.cells[gid]) if gid in extracted.cells else None
        if tree is not None:  # a cell that does not parse is dropped whole by the extractor, which says so
            out += [(gid, node) for node in tree.body if ex._keep(node, trusted=False)[0]]
    return out


def effective(kept: list[tuple[str, ast.stmt]]) -> list[Definition]:
    """The functions and methods that are live once the module has loaded: the last definition of each name."""
    last: dict[str, tuple[str, ast.stmt]] = {}
    for gid, node in kept:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            last.pop(node.name, None)  # re-insert: the order is that of the live definitions
            last[node.name] = (gid, node)
    out = []
    for name, (gid, node) in last.items():
        if isinstance(node, ast.ClassDef):
            methods: dict[str, Any] = {m.name: m for m in node.body if isinstance(m, (ast.FunctionDef,
                                                                                      ast.AsyncFunctionDef))}
            out += [Definition(f"{name}.{m}", gid, n) for m, n in methods.items()]
        else:
            out.append(Definition(name, gid, node))
    return out

"""What every learner is given, and what copies are compared with: the course's own code, fingerprinted once.

MOSS subtracts a *base file*: code every submission may contain because the
course handed it out. Here that is the released notebook (stubs, helpers,
tests, demos), the code snippets of its markdown (fenced blocks and inline
spans that parse as Python: the notebook's recipes) and, for comparisons
between classmates, the course's published solution (``solutions/`` is
public, so two learners alike only where the solution is are not copying
each other). Fingerprints found there never count as evidence.

The engine's own implementation of what the assignment blocks is the other
side: the code a learner could paste. So is the grader's own code that would
solve an assignment (``grader_code`` in its judge's ``REVIEW``: 07's exact
search returns optimal puzzle tables, and the repository is public). All of it is read from the
repository (never from a submission) and cached per assignment.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import nbformat

from .. import course_root, notebook_names
from ..judge import extract as ex
from ..judge import facts, view
from .fingerprints import kgrams, winnow
from .tokens import Budget, Stream, emit, function_tokens

FENCED = re.compile(r"```[^\n]*\n(.*?)```", re.S)
INLINE = re.compile(r"`([^`\n]+)`")
TRUSTED = 10**9  # the course's own code is not capped


@dataclass(frozen=True)
class Engine:
    """One function a learner could paste (gpipe_core's, or the grader's): every k-gram, its winnowed fingerprints.

    ``origin`` starts the evidence: "gpipe_core's" for the engine, "the grader's" for the files of the judge's
    ``REVIEW.grader_code``, whose ``name`` then carries the file's path (``autograder/judge/puzzle_search.py:solve``).
    """

    name: str
    grams: frozenset[int]
    prints: frozenset[int]
    origin: str = "gpipe_core's"


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(ex._to_python(text))
    except (SyntaxError, ValueError):
        return None


def _functions(tree: ast.AST) -> list[ast.AST]:
    """Every function and method defined at the top of ``tree`` (methods of top-level classes included)."""
    out: list[ast.AST] = []
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(node)
        elif isinstance(node, ast.ClassDef):
            out += [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return out


def grams_of_code(text: str) -> set[int]:
    """All k-grams of a piece of course code: its functions as learners' are read, and its statements as written."""
    tree = _parse(text)
    if tree is None:
        return set()
    budget = Budget(TRUSTED)
    out = set(kgrams(emit(tree, None, budget, prune=False).tokens))
    for fn in _functions(tree):
        out.update(kgrams(function_tokens(fn, budget).tokens))
    return out


def _released(assignment: str) -> Any:
    (name,) = notebook_names(assignment)[:1]
    return nbformat.read(course_root() / "notebooks" / assignment / f"{name}.ipynb", as_version=4)


def recipes(nb: Any) -> list[str]:
    """The code in a notebook's markdown: fenced blocks, and inline spans that parse as Python."""
    out = []
    for cell in nb.cells:
        if cell.get("cell_type") != "markdown":
            continue
        text = cell.get("source", "")
        out += FENCED.findall(text)
        out += [span for span in INLINE.findall(FENCED.sub("", text)) if _parse(span) is not None]
    return out


@cache
def given(assignment: str) -> frozenset[int]:
    """K-grams of what every learner is handed: the released notebook's code and its recipes."""
    nb = _released(assignment)
    out: set[int] = set()
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            out |= grams_of_code(cell.get("source", ""))
    for snippet in recipes(nb):
        out |= grams_of_code(snippet)
    return frozenset(out)


@cache
def published(assignment: str) -> frozenset[int]:
    """K-grams of the course's published solution cells (markers removed)."""
    out: set[int] = set()
    for cell in ex.source_notebook(assignment).cells:
        if ex._meta(cell).get("solution"):
            text = "\n".join(ln for ln in cell.get("source", "").splitlines() if not ln.strip().startswith("### "))
            out |= grams_of_code(text)
    return frozenset(out)


def _engine_nodes(name: str) -> list[tuple[str, ast.AST]]:
    """The function, method or class (then each of its methods) that ``name`` (``module.qualname``) names."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):  # the longest module path that exists (as the grading view does)
        file = view.PACKAGE.joinpath(*parts[:split]).with_suffix(".py")
        if not file.exists():
            continue
        body: list[ast.stmt] = ast.parse(file.read_text()).body
        node: ast.AST | None = None
        for part in parts[split:]:
            found = [n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == part]
            node = found[-1] if found else None
            body = node.body if isinstance(node, ast.ClassDef) else []
        if isinstance(node, ast.ClassDef):
            return [(f"{name}.{m.name}", m) for m in _functions(ast.Module(body=[node], type_ignores=[]))]
        return [(name, node)] if node is not None else []
    return []


def _reference(name: str, node: ast.AST, origin: str = "gpipe_core's") -> Engine:
    stream: Stream = function_tokens(node, Budget(TRUSTED))
    grams = kgrams(stream.tokens)
    return Engine(name, frozenset(grams), frozenset(winnow(grams)), origin)


def grader_code(assignment: str) -> list[Engine]:
    """Every function and method of the files its judge names in ``REVIEW.grader_code``, by path and name."""
    out = []
    for path in facts.review(assignment).grader_code:
        tree = ast.parse((course_root() / path).read_text())
        out += [_reference(f"{path}:{fn.name}", fn, "the grader's") for fn in _functions(tree)]  # type: ignore[attr-defined]
    return out


@cache
def engine(assignment: str) -> tuple[Engine, ...]:
    """gpipe_core's own versions of what ``assignment`` blocks, and the grader's code that would solve it."""
    try:
        names: Any = view.blocked(assignment)  # the view's closure: everything that has no body when grading
    except KeyError:
        names = ()
    except LookupError:  # the view's own consistency check failed: compare with what the exercises name
        names = view.graded(assignment)
    out = [_reference(qualname, node) for name in names for qualname, node in _engine_nodes(name)]
    return tuple(out + grader_code(assignment))

"""Copies made to escape copy detection: renamed, reordered and padded, for the review's tests.

``disguise(source, name)`` takes a function's source (the engine's, a
classmate's) and returns what a copier would submit: the function renamed,
every local name replaced, independent neighbouring assignments swapped, and
a dead statement (an unused assignment, a bare literal, ``pass``, an
``if False:`` block, a docstring-like string) after every statement.
"""

from __future__ import annotations

import ast
import textwrap

PADS = ["_unused = 0", "None", "'padding'", "pass", "if False:\n    spare = 1", "scratch = len([])", "0",
        "assert True"]
SIMPLE = (ast.Assign, ast.AugAssign, ast.AnnAssign)


class _Rename(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.names.get(node.id, node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self.names.get(node.arg, node.arg)
        return node


def _locals(fn: ast.FunctionDef) -> set[str]:
    out = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)} - {"self"}
    return out | {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _names(node: ast.AST, store: bool) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store) == store}


def _independent(a: ast.stmt, b: ast.stmt) -> bool:
    wa, ra, wb, rb = _names(a, True), _names(a, False), _names(b, True), _names(b, False)
    return not (wa & (wb | rb)) and not (wb & ra)


def _swap(body: list[ast.stmt]) -> tuple[list[ast.stmt], int]:
    out, i, swaps = list(body), 0, 0
    while i + 1 < len(out):
        a, b = out[i], out[i + 1]
        if isinstance(a, SIMPLE) and isinstance(b, SIMPLE) and _independent(a, b):
            out[i], out[i + 1] = b, a
            swaps += 1
            i += 2
        else:
            i += 1
    return out, swaps


def disguise(source: str, name: str, rename: bool = True, reorder: bool = True, pad: bool = True) -> str:
    """``source`` (one function) as a copier would hand it in under ``name``."""
    fn = ast.parse(textwrap.dedent(source)).body[0]
    assert isinstance(fn, ast.FunctionDef), "disguise takes the source of one function"
    fn.name = name
    if ast.get_docstring(fn):
        fn.body = fn.body[1:]
    if rename:
        _Rename({n: f"v{i}" for i, n in enumerate(sorted(_locals(fn)))}).visit(fn)
    for k, node in enumerate(list(ast.walk(fn))):
        for field in ("body", "orelse"):
            stmts = getattr(node, field, None)
            if not (isinstance(stmts, list) and stmts and isinstance(stmts[0], ast.stmt)):
                continue
            if reorder:
                stmts, _ = _swap(stmts)
            if pad:
                stmts = [s for j, x in enumerate(stmts) for s in [x, *ast.parse(PADS[(k + j) % len(PADS)]).body]]
            setattr(node, field, stmts)
    return ast.unparse(ast.fix_missing_locations(fn)) + "\n"


def swaps(source: str) -> int:
    """How many pairs of independent neighbouring assignments ``disguise`` would swap (tests assert some)."""
    fn = ast.parse(textwrap.dedent(source)).body[0]
    return sum(_swap(stmts)[1] for node in ast.walk(fn) for field in ("body", "orelse")
               if isinstance(stmts := getattr(node, field, None), list) and stmts and isinstance(stmts[0], ast.stmt))

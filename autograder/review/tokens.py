"""A function as a stream of normalised tokens, so renaming, reordering and padding hide nothing.

Copy detection compares what code does, not how it is spelled. The stream is
read off the AST in a fixed order (so layout, comments and parentheses are
gone) and normalised:

* identifiers a learner chooses become ``ID``; builtins (``range``, ``len``),
  attribute names (``.append``, ``.shape``) and keyword names stay, since a
  learner cannot rename those;
* numbers become ``N``, strings and f-strings ``S``;
* dead statements are dropped: docstrings, ``pass``, bare expressions that
  call nothing, ``print``, assignments to names never read, ``if False:``
  blocks, ``assert True``, ``del``, unused nested functions;
* each run of consecutive simple assignments is put in one canonical order
  (dependencies kept), so swapping independent lines changes nothing.

Every token carries its source line, for the evidence. The work is linear in
the size of the function and stops at a budget of tokens, so no submission
can make it expensive (:class:`Budget`).
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field

BUILTINS = frozenset(dir(builtins))
SKIP_FIELDS = {"ctx", "type_comment", "annotation", "returns", "type_ignores", "format_spec"}
RUN = 12  # simple statements canonicalised together at most (keeps the reordering linear)
SIMPLE = (ast.Assign, ast.AugAssign, ast.AnnAssign)


class Cut(Exception):
    """The budget of tokens ran out."""


@dataclass
class Tally:
    """All work done by a review (tokens made, nodes walked, index entries visited): what tests bound."""

    spent: int = 0


@dataclass
class Budget:
    """Tokens left for one submission; its work is counted in ``tally``."""

    left: int
    tally: Tally = field(default_factory=Tally)

    def take(self, n: int = 1) -> None:
        self.tally.spent += n
        self.left -= n
        if self.left < 0:
            raise Cut


@dataclass
class Stream:
    tokens: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def add(self, token: str, line: int, budget: Budget) -> None:
        budget.take()
        self.tokens.append(token)
        self.lines.append(line)


def _dead_expr(node: ast.stmt) -> bool:
    if not isinstance(node, ast.Expr):
        return False
    value = node.value
    if isinstance(value, ast.Call):
        return isinstance(value.func, ast.Name) and value.func.id == "print"
    return not isinstance(value, (ast.Await, ast.Yield, ast.YieldFrom))


def used_names(node: ast.AST, budget: Budget) -> set[str] | None:
    """Names read anywhere in ``node`` outside dead expressions; None (all count as read) past the budget's size."""
    out: set[str] = set()
    stack = [node]
    visited = 0
    while stack:
        n = stack.pop()
        visited += 1
        if visited > budget.left:
            budget.tally.spent += visited
            return None
        if isinstance(n, ast.stmt) and _dead_expr(n):
            continue
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store):
            out.add(n.id)
        stack.extend(ast.iter_child_nodes(n))
    budget.tally.spent += visited
    return out


def _names(target: ast.AST) -> list[str] | None:
    """The plain names a target binds, or None when it stores into something else (an index, an attribute)."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        parts = [_names(e) for e in target.elts]
        return None if any(p is None for p in parts) else [n for p in parts for n in p or []]
    return None


def _live(stmts: list[ast.stmt], used: set[str] | None) -> list[ast.stmt]:
    """``stmts`` without dead statements, constant ``if`` branches spliced in."""
    out: list[ast.stmt] = []
    for s in stmts:
        if isinstance(s, (ast.Pass, ast.Delete, ast.Global, ast.Nonlocal)) or _dead_expr(s):
            continue
        if isinstance(s, ast.Assert) and isinstance(s.test, ast.Constant):
            continue
        if isinstance(s, (ast.If, ast.While)) and isinstance(s.test, ast.Constant):
            if isinstance(s, ast.If):
                out += _live(s.body if s.test.value else s.orelse, used)
            elif not s.test.value:
                out += _live(s.orelse, used)
            else:
                out.append(s)
            continue
        if used is None:
            out.append(s)
            continue
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and s.name not in used:
            continue
        targets = s.targets if isinstance(s, ast.Assign) else [s.target] if isinstance(s, SIMPLE) else None
        if targets is not None:
            names = [_names(t) for t in targets]
            if all(n is not None for n in names) and not {x for n in names for x in n or []} & used:
                continue
            if isinstance(s, ast.AnnAssign) and s.value is None:
                continue
        out.append(s)
    return out


def _touches(s: ast.stmt) -> tuple[set[str], set[str]]:
    """(names written, names read) by a simple statement; attributes and indexes count as their root name."""
    writes, reads = set(), set()
    for target in s.targets if isinstance(s, ast.Assign) else [s.target]:
        for n in ast.walk(target):
            if isinstance(n, ast.Name):
                (writes if isinstance(n.ctx, ast.Store) else reads).add(n.id)
    if isinstance(s, ast.AugAssign):
        reads |= writes
    for n in ast.walk(s.value) if s.value is not None else ():
        if isinstance(n, ast.Name):
            reads.add(n.id)
    for target in s.targets if isinstance(s, ast.Assign) else [s.target]:
        if not isinstance(target, (ast.Name, ast.Tuple, ast.List)):
            root = target
            while isinstance(root, (ast.Attribute, ast.Subscript)):
                root = root.value
            if isinstance(root, ast.Name):
                writes.add(root.id)
    return writes, reads


def _canonical(run: list[tuple[ast.stmt, Stream]]) -> list[Stream]:
    """The run's statements in dependency order, ties broken by their tokens (so any valid order gives one)."""
    touched = [_touches(s) for s, _ in run]
    after = {i: {j for j in range(i) if touched[i][0] & (touched[j][0] | touched[j][1])
                 or touched[j][0] & touched[i][1]} for i in range(len(run))}
    done: list[int] = []
    while len(done) < len(run):
        ready = [i for i in range(len(run)) if i not in done and after[i] <= set(done)]
        done.append(min(ready, key=lambda i: run[i][1].tokens))
    return [run[i][1] for i in done]


def _token(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id if node.id in BUILTINS else "ID"
    if isinstance(node, ast.Constant):
        v = node.value
        return repr(v) if v is None or isinstance(v, bool) or v is Ellipsis else "S" if isinstance(v, (str, bytes)) \
            else "N"
    if isinstance(node, ast.JoinedStr):
        return "S"
    if isinstance(node, ast.Attribute):
        return "." + node.attr
    if isinstance(node, ast.keyword):
        return f"kw:{node.arg or '**'}"
    if isinstance(node, ast.arg):
        return "ID"
    if isinstance(node, (ast.expr_context, ast.Module)):
        return None
    return type(node).__name__


def emit(node: ast.AST, used: set[str] | None, budget: Budget, out: Stream | None = None, prune: bool = True) -> Stream:
    """The normalised tokens of ``node`` (a function, a method or any statement), in a fixed order.

    ``used`` are the names the function reads (None: keep every assignment); ``prune=False`` keeps dead
    statements too (for the course's own snippets, whose bare expressions are the point).
    """
    out = out if out is not None else Stream()
    work: list[tuple[str, object, int]] = [("node", node, getattr(node, "lineno", 0))]
    while work:
        what, item, line = work.pop()
        if what == "tok":
            out.add(str(item), line, budget)
            continue
        if what == "stream":
            out.tokens += item.tokens  # type: ignore[attr-defined]  (paid for when it was emitted)
            out.lines += item.lines  # type: ignore[attr-defined]
            continue
        if what == "cut":
            raise Cut
        if what == "stmts":
            work += reversed(_statements(item, used, budget, line, prune))  # type: ignore[arg-type]
            continue
        n: ast.AST = item  # type: ignore[assignment]
        line = getattr(n, "lineno", line)
        token = _token(n)
        if token is not None:
            out.add(token, line, budget)
        if isinstance(n, (ast.Name, ast.Constant, ast.JoinedStr)):
            continue
        children: list[tuple[str, object, int]] = []
        for name, value in ast.iter_fields(n):
            if name in SKIP_FIELDS:
                continue
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                children.append(("stmts", value, line))
            elif isinstance(value, list):
                children += [("node", v, line) for v in value if isinstance(v, ast.AST)]
            elif isinstance(value, ast.AST):
                children.append(("node", value, line))
        work += reversed(children)
    return out


def _statements(stmts: list[ast.stmt], used: set[str] | None, budget: Budget, line: int,
                prune: bool) -> list[tuple[str, object, int]]:
    """Work items for a block: its live statements, simple runs in canonical order, then the block's end."""
    items: list[tuple[str, object, int]] = []
    run: list[tuple[ast.stmt, Stream]] = []

    def flush() -> None:
        items.extend(("stream", s, line) for s in _canonical(run))
        run.clear()

    try:
        for s in _live(stmts, used) if prune else stmts:
            if isinstance(s, SIMPLE):
                run.append((s, emit(s, used, budget, prune=prune)))
                if len(run) == RUN:
                    flush()
                continue
            flush()
            items.append(("node", s, getattr(s, "lineno", line)))
    except Cut:  # keep what was made before the budget ran out, then stop there
        flush()
        return [*items, ("cut", None, line)]
    flush()
    return [*items, ("tok", "}", line)]


def function_tokens(node: ast.AST, budget: Budget) -> Stream:
    """A definition's stream, as far as the budget goes (a cut leaves the tokens made so far)."""
    out = Stream()
    try:
        emit(node, used_names(node, budget), budget, out)
    except Cut:
        pass
    return out

"""What may run while the learner's definitions load: nothing the learner wrote.

The probe's harness forks a child per task and loads the learner's module in
it; the checks here make sure loading that module (defining functions and
classes, binding constants and aliases) runs only trusted code, so nothing the
learner wrote can replace what the child measures with before a task starts.
Decorators, default values, class bodies, bases and aliases are checked by
AST; ``Names`` records which top-level names trusted imports bound and which
the learner bound (a learner's name is never trusted, whatever it shadows).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field


def _root(module: str | None) -> str:
    return (module or "").split(".")[0]


def simple(node: ast.AST | None) -> bool:
    """A name, a dotted name, a literal, a negative number or a tuple/list of those."""
    if node is None or isinstance(node, (ast.Name, ast.Constant)):
        return True
    if isinstance(node, ast.Attribute):
        return simple(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return isinstance(node.operand, ast.Constant)
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(simple(e) for e in node.elts)
    return False


def alias(node: ast.AST) -> bool:
    """A type expression such as ``list[list[Action]]`` or ``Callable[[Tensor], Tensor]``."""
    if isinstance(node, ast.Subscript):
        return alias(node.value) and alias(node.slice)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return alias(node.left) and alias(node.right)
    return simple(node)


BUILTIN_DECORATORS = {"staticmethod", "classmethod", "property"}
CLASS_HOOKS = {"__init_subclass__", "__set_name__", "__class_getitem__", "__mro_entries__", "__prepare__"}


@dataclass
class Names:
    """Who bound each top-level name: a trusted import, or the learner (whose code may not run on load)."""

    imported: set[str] = field(default_factory=set)
    learner: set[str] = field(default_factory=set)
    enum: set[str] = field(default_factory=set)  # names bound to the enum module or its classes


def _dotted_root(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _decorator_ok(node: ast.AST, names: Names, properties: set[str] = frozenset()) -> bool:
    """Trusted code only: a decorator from a trusted import or a builtin, with literal arguments."""
    if isinstance(node, ast.Call):
        return _decorator_ok(node.func, names, properties) and all(simple(a) for a in node.args) and all(
            simple(k.value) for k in node.keywords)
    if not simple(node):
        return False
    root = _dotted_root(node)
    if isinstance(node, ast.Attribute) and root in properties and node.attr in ("setter", "getter", "deleter"):
        return True  # @value.setter on a property the class defined just above
    if root in names.learner:
        return False
    return root in names.imported or (isinstance(node, ast.Name) and node.id in BUILTIN_DECORATORS)


def function_problem(node: ast.FunctionDef | ast.AsyncFunctionDef, names: Names | None = None,
                      properties: set[str] = frozenset()) -> str | None:
    names = names or Names()
    if not all(_decorator_ok(d, names, properties) for d in node.decorator_list):
        return (f"function {node.name}: a decorator that is not a trusted library's (it would run your code "
                "while the definition loads)")
    args = node.args
    if not all(simple(d) for d in [*args.defaults, *[d for d in args.kw_defaults if d is not None]]):
        return f"function {node.name}: a default value that is not a literal or a name"
    return None


def class_problem(node: ast.ClassDef, names: Names | None = None) -> str | None:
    names = names or Names()
    if node.keywords or not all(simple(b) for b in node.bases) or not all(_decorator_ok(d, names) for d in
                                                                          node.decorator_list):
        return (f"class {node.name}: a metaclass or keyword, a base that is more than a name, or a decorator "
                "that is not a trusted library's")
    if any(_dotted_root(b) in names.enum for b in node.bases):
        return f"class {node.name}: an enum base (the enum machinery calls your methods while the class loads)"
    properties: set[str] = set()
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if item.name in CLASS_HOOKS:
                return f"class {node.name}: {item.name} runs while classes are defined or subscripted"
            problem = function_problem(item, names, properties)
            if problem:
                return f"class {node.name}: {problem}"
            if any(isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list):
                properties.add(item.name)
        elif isinstance(item, (ast.Assign, ast.AnnAssign)):
            if item.value is not None and not simple(item.value):
                return f"class {node.name}: an attribute set to something other than a literal"
        elif not (isinstance(item, ast.Pass) or (isinstance(item, ast.Expr) and isinstance(item.value, ast.Constant))):
            return f"class {node.name}: a statement that is not a method, a constant or a docstring"
    return None


def subscripts_learner(node: ast.AST, names: Names) -> bool:
    return any(isinstance(n, ast.Subscript) and _dotted_root(n.value) in names.learner for n in ast.walk(node))


def bind(node: ast.stmt, names: Names, learner: bool) -> None:
    """Record the top-level names ``node`` binds, and whether a trusted import or the learner bound them."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        module = node.module if isinstance(node, ast.ImportFrom) else None
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            names.imported.add(bound)
            names.learner.discard(bound)
            if _root(module or alias.name) == "enum":
                names.enum.add(bound)
        return
    targets: list[ast.AST] = []
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        targets = [ast.Name(node.name)]
    elif isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign):
        targets = [node.target]
    for t in targets:
        if isinstance(t, ast.Name):
            (names.learner if learner else names.imported).add(t.id)
            if learner:
                names.imported.discard(t.id)
                names.enum.discard(t.id)


def load_time_names(node: ast.stmt) -> set[str]:
    """The names ``node`` looks up while it is defined (bases, decorators, defaults, assigned values), not
    those its function bodies use when called."""
    exprs: list[ast.AST] = []
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        exprs += [*node.decorator_list, *node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]
    elif isinstance(node, ast.ClassDef):
        exprs += [*node.bases, *node.decorator_list, *[k.value for k in node.keywords]]
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                exprs += [*item.decorator_list, *item.args.defaults]
            elif isinstance(item, (ast.Assign, ast.AnnAssign)) and item.value is not None:
                exprs.append(item.value)
    elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        exprs.append(node.value)
    return {n.id for e in exprs for n in ast.walk(e) if isinstance(n, ast.Name)}

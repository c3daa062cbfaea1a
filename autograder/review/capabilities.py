"""Holds: learner code able to tamper with what the probe measures in its own process.

Some checks must run learner code beside a measurement (memory held, calls
made, a training step). The probe gives each such task a fresh child and
keeps its limits outside it, but inside one CPython process nothing stops
code that reaches the interpreter's machinery: frames, code objects, module
dictionaries, the garbage collector, torch's dispatch and hooks. Such code is
not judged by the score it gets: the submission is **held**, scored only after
an instructor has looked, with each line and rule named here.

The rules are read off the AST of exactly the statements the probe loads
(:func:`.definitions.statements`) and deny by default where honest code has no
need: dynamic code and introspection builtins; attribute names given as data;
dunder attributes (save ``super().__init__(...)``-style calls and reading a
``__name__``); private attributes of anything but ``self``/``cls``; any name or
attribute that names a module or internal that reaches the interpreter
(``torch.os.system`` reaches ``os`` through torch); writing attributes of
modules; ``global``; imports in a function body from outside the extractor's
allow-list; dunder methods other than the plain protocol ones; subclasses of
``Tensor`` or ``type``. Names are resolved by scope, so a learner's own local
called ``ops`` or ``graph`` is not a module.
"""

from __future__ import annotations

import ast
from typing import Any

from ..judge.extract import ALLOWED_IMPORTS
from .definitions import statements
from .findings import Finding, hold

BUILTIN_CODE = {"exec", "eval", "compile", "__import__", "globals", "locals", "vars", "open", "breakpoint",
                "memoryview", "input", "exit", "quit", "help", "get_ipython"}
BY_NAME = {"getattr", "setattr", "delattr", "attrgetter", "methodcaller"}  # the attribute's name must be literal
MODULES = {"os", "sys", "gc", "ctypes", "signal", "threading", "multiprocessing", "subprocess", "inspect",
           "importlib", "builtins", "io", "pathlib", "shutil", "socket", "pickle", "marshal", "types", "weakref",
           "resource", "faulthandler", "atexit", "_C", "_dynamo", "cpp_extension", "load_inline", "library", "ops",
           "jit", "graph", "hooks", "_thread", "sysconfig", "codecs", "base64", "zlib", "concurrent", "asyncio",
           "tracemalloc", "ctypeslib", "overrides", "fx", "hub", "package", "memory", "linecache", "traceback",
           "warnings", "mmap", "posix", "select", "site", "code", "dis", "runpy", "pty", "fcntl", "compile"}
INTERNALS = {"gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code",
             "tb_frame", "tb_next", "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "f_trace", "co_code",
             "co_consts", "co_names", "load", "save", "from_file", "fromfile", "tofile"}
DUNDER_READS = {"__name__", "__qualname__", "__doc__"}
DUNDER_CALLS = {"__init__", "__call__", "__post_init__"}  # called on self, cls or super()
DUNDER_METHODS = {"__init__", "__call__", "__post_init__", "__repr__", "__str__", "__len__", "__iter__", "__next__",
                  "__getitem__", "__contains__", "__enter__", "__exit__"}
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp, ast.DictComp,
          ast.GeneratorExp)


def _dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _bound(scope: ast.AST) -> set[str]:
    """Names bound directly in ``scope`` (nested scopes excluded: under-counting only adds holds)."""
    out: set[str] = set()
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        out |= {a.arg for a in ast.walk(scope.args) if isinstance(a, ast.arg)}
        stack: list[ast.AST] = [scope.body] if isinstance(scope, ast.Lambda) else list(scope.body)
    elif isinstance(scope, ast.ClassDef):
        stack = list(scope.body)
    elif isinstance(scope, SCOPES):
        out |= {n.id for g in scope.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        return out
    else:
        stack = list(getattr(scope, "body", []))
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            out.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
            stack += n.decorator_list + getattr(n, "bases", []) + [d for d in getattr(getattr(n, "args", None),
                                                                                        "defaults", [])]
            continue
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split(".")[0] for a in n.names}
        elif isinstance(n, ast.ExceptHandler) and n.name:
            out.add(n.name)
        if not isinstance(n, SCOPES):
            stack.extend(ast.iter_child_nodes(n))
    return out


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class _Scan:
    """One pass over kept statements, collecting (line, rule) -> evidence."""

    def __init__(self, module_names: set[str], own: set[str]) -> None:
        self.module_names = module_names  # bound at the probe module's top: the prelude's and the learner's
        self.own = own  # the learner's own top-level functions, classes and constants (not imports)
        self.found: dict[tuple[int, str], str] = {}
        self.called: set[int] = set()  # ids of the function nodes of calls

    def add(self, node: ast.AST, rule: str, evidence: str) -> None:
        self.found.setdefault((getattr(node, "lineno", 0), rule), evidence)

    def run(self, tree: ast.AST) -> None:
        # (node, names bound in enclosing function scopes, the env outside a class body being read, in a function)
        work: list[tuple[ast.AST, frozenset[str], frozenset[str] | None, bool]] = [(tree, frozenset(), None, False)]
        while work:
            node, env, class_outer, in_function = work.pop()
            self.check(node, env, class_outer, in_function)
            if not isinstance(node, SCOPES):
                work += [(c, env, class_outer, in_function) for c in ast.iter_child_nodes(node)]
                continue
            inner = (class_outer if class_outer is not None else env) | _bound(node)
            outside = [*getattr(node, "decorator_list", []), *getattr(node, "bases", []),
                       *getattr(node, "keywords", [])]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                outside += [d for d in [*node.args.defaults, *node.args.kw_defaults] if d is not None]
            work += [(c, env, class_outer, in_function) for c in outside]
            if isinstance(node, ast.ClassDef):
                work += [(c, inner, class_outer if class_outer is not None else env, in_function) for c in node.body]
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                work += [(c, inner, None, True) for c in node.body]
            elif isinstance(node, ast.Lambda):
                work.append((node.body, inner, None, True))
            else:  # a comprehension: its first iterable is evaluated outside
                first, *rest = node.generators
                work.append((first.iter, env, class_outer, in_function))
                work += [(c, inner, None, in_function) for c in [first.target, *first.ifs, *rest]]
                results = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
                work += [(c, inner, None, in_function) for c in results]

    def check(self, node: ast.AST, env: frozenset[str], class_outer: frozenset[str] | None, in_function: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _dunder(node.name) and (
                class_outer is None or node.name not in DUNDER_METHODS):
            self.add(node, "dunder-method", f"defines {node.name}, which the interpreter calls on its own")
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                last = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                if last in ("Tensor", "Parameter", "type", "ModuleType"):
                    self.add(node, "subclass", f"subclasses {ast.unparse(base)}: its methods run inside torch's "
                                               "or the interpreter's own operations")
        elif isinstance(node, ast.Call):
            self.call(node, env)
        elif isinstance(node, ast.Name) and node.id not in env:
            builtin = node.id not in self.module_names
            if builtin and node.id in BUILTIN_CODE:
                self.add(node, "dynamic-code", f"uses {node.id}")
            elif builtin and node.id in BY_NAME and id(node) not in self.called:
                self.add(node, "by-name", f"passes {node.id} around (the attribute it reaches is not written out)")
            elif node.id not in self.own and (node.id in MODULES or (_dunder(node.id) and node.id != "__name__")):
                self.add(node, "module", f"names {node.id}")  # even where the course's prelude imported it
        elif isinstance(node, ast.Attribute):
            self.attribute(node, node.attr, node.value)
            if node.attr in BY_NAME and id(node) not in self.called:
                self.add(node, "by-name", f"passes {node.attr} around (the attribute it reaches is not written out)")
            if not isinstance(node.ctx, ast.Load):
                root: ast.AST = node
                while isinstance(root, (ast.Attribute, ast.Subscript, ast.Call)):
                    root = root.func if isinstance(root, ast.Call) else root.value
                if not (isinstance(root, ast.Name) and (root.id in env or root.id in self.own)):
                    self.add(node, "module-write", f"changes {ast.unparse(node)[:80]}, which is not its own object")
        elif isinstance(node, ast.Global):
            self.add(node, "global", f"rebinds module globals ({', '.join(node.names)}) while the grader runs")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            self.imports(node, in_function)

    def call(self, node: ast.Call, env: frozenset[str]) -> None:
        self.called.add(id(node.func))
        func = node.func.id if isinstance(node.func, ast.Name) and node.func.id not in env else \
            node.func.attr if isinstance(node.func, ast.Attribute) else None
        if func in BY_NAME:
            where = 1 if func in ("getattr", "setattr", "delattr") else 0
            name = _literal(node.args[where]) if len(node.args) > where else None
            if name is None or any(isinstance(a, ast.Starred) for a in node.args) or node.keywords and where == 0:
                self.add(node, "by-name", f"{func} with an attribute name that is not written out")
            else:
                self.attribute(node, name, None)
        if func == "type" and len(node.args) == 3:
            self.add(node, "dynamic-code", "builds a class with type(name, bases, namespace)")

    def attribute(self, node: ast.AST, name: str, root: ast.AST | None) -> None:
        """The rules for an attribute ``name`` of ``root`` (None: unknown, as in getattr)."""
        own = isinstance(root, ast.Name) and root.id in ("self", "cls")
        if _dunder(name):
            via_super = isinstance(root, ast.Call) and isinstance(root.func, ast.Name) and root.func.id == "super"
            if not (name in DUNDER_READS or (name in DUNDER_CALLS and id(node) in self.called and (own or via_super))):
                self.add(node, "dunder", f"reaches {name}, an interpreter internal")
        elif name.startswith("_") and not own and name not in NAMEDTUPLE_API:
            self.add(node, "private", f"reads {name}, a private attribute of something not its own")
        elif not own and (name in MODULES or name in INTERNALS or "hook" in name.lower()
                          or name.startswith("set_default")):
            self.add(node, "module", f"reaches {name}, which can change the process the grader measures in")

    def imports(self, node: ast.Import | ast.ImportFrom, in_function: bool) -> None:
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        names = [] if isinstance(node, ast.Import) else [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom) and (node.level or "*" in names):
            self.add(node, "import", "a relative or star import (what it binds is not written out)")
        if in_function and any(m.split(".")[0] not in ALLOWED_IMPORTS for m in modules):
            self.add(node, "import", f"imports {', '.join(modules)} in a function, outside the modules the "
                                     "probe allows (autograder/judge/extract.py, ALLOWED_IMPORTS)")
        for part in [p for m in modules for p in m.split(".")] + names:
            if part in MODULES or part in INTERNALS or _dunder(part) or (
                    part.startswith("_") and part != "__future__" and part not in NAMEDTUPLE_API):
                self.add(node, "import", f"imports {part}, an internal that reaches the interpreter")


def _top_names(nodes: list[ast.stmt]) -> tuple[set[str], set[str]]:
    """(every name bound at the top of these statements, those that are not imports)."""
    everything, own = set(), set()
    for node in nodes:
        bound = _bound(ast.Module(body=[node], type_ignores=[]))
        everything |= bound
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            own |= bound
    return everything, own


def holds(assignment: str, extracted: Any, kept: list[tuple[str, ast.stmt]] | None = None) -> list[Finding]:
    """Every line of the learner's loaded definitions that can tamper with the probe's process, one hold each.

    ``extracted`` is :func:`autograder.judge.extract.extract`'s result; ``kept`` its statements, when the caller
    has read them already (:func:`.definitions.statements`).
    """
    from ..judge.extract import _prelude

    kept = statements(assignment, extracted) if kept is None else kept
    prelude, _ = _top_names(_prelude(assignment))
    learner, own = _top_names([node for _, node in kept])
    out = []
    for gid in dict.fromkeys(g for g, _ in kept):
        scan = _Scan(prelude | learner, own)
        scan.run(ast.Module(body=[n for g, n in kept if g == gid], type_ignores=[]))
        out += [hold(rule, f"cell {gid}, line {line}", evidence)
                for (line, rule), evidence in sorted(scan.found.items())]
    return out

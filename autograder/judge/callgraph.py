"""gpipe_core's call graph, read from its source: what each function calls or names, through any import alias.

The grading view (:mod:`.view`) must remove every body that would solve an
exercise. Naming them by hand misses the private helper a public function
delegates to (``ticks_from_orders`` is one line around ``schedule._place``)
and the sibling that computes the same answer (a subclass of the storing
policy). So the view starts from an exercise's :class:`Family` and follows
this graph: any function, method, class or module constant that a blocked
body names, resolved through ``from .x import y as z``, ``from . import x``,
``import gpipe_core.x as X``, ``self.method`` and module aliases
(``_check = check_sizes``), is blocked too unless the view allows it by name.

Static and conservative on purpose: a name counts as used whether it is
called, stored in a table or passed along, and a class counts with every
method. Attribute calls on objects of unknown type (``policy.forward(...)``)
are not followed: that is where the engine calls learner code.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

Function = ast.FunctionDef | ast.AsyncFunctionDef
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(frozen=True)
class Family:
    """Engine code that would solve one exercise: named functions and rules that find their siblings.

    ``names``: functions, methods or classes (a class: every method). ``returns``: every function of
    ``modules`` (every module when empty) whose return annotation reads exactly one of these.
    ``modules`` alone: every function of those modules. ``implements``: every class whose methods have the
    names and parameters of this protocol's, and every subclass of one. ``why``: for a family with neither
    names nor rules, why nothing in the engine solves the exercise (each exercise says one or the other).
    """

    names: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    returns: tuple[str, ...] = ()
    implements: str = ""
    why: str = ""

    def plus(self, *names: str) -> Family:
        """The same rules, and these functions by name (named first: the review compares learner code with them)."""
        return replace(self, names=tuple(dict.fromkeys((*names, *self.names))))

    def members(self, graph: Graph) -> dict[str, bool]:
        """Every function or method of the family (``module.qualname``) -> whether it was named (not ruled)."""
        out: dict[str, bool] = {}
        for name in self.names:
            found = graph.canonical(name)
            if found not in graph.kinds:
                raise LookupError(f"grading view: no {name} in gpipe_core (renamed? update the family)")
            out.update(dict.fromkeys(graph.methods(found) if graph.kinds[found] == "class" else [found], True))
        if self.modules or self.returns:
            for name, node in graph.functions_in(self.modules):
                if not self.returns or (node.returns is not None and ast.unparse(node.returns) in self.returns):
                    out.setdefault(name, False)
        if self.implements:
            for cls in graph.implementers(graph.canonical(self.implements)):
                out.update(dict.fromkeys(graph.methods(cls), False))
        return out


def _annotations(node: ast.AST) -> list[ast.expr]:
    """Type hints (never evaluated under ``from __future__ import annotations``: not uses)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [node.returns] if node.returns is not None else []
    if isinstance(node, ast.arg):
        return [node.annotation] if node.annotation is not None else []
    return [node.annotation] if isinstance(node, ast.AnnAssign) else []


def _join(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


class Graph:
    """Every function, method, class and module constant of a package, and the package names each one uses."""

    def __init__(self, package: Path) -> None:
        self.package = package
        self.files: dict[str, Path] = {}  # module ("schedules.schedule", "" for the package) -> file
        self.nodes: dict[str, ast.AST] = {}
        self.kinds: dict[str, str] = {}  # name -> "function" | "class" | "constant"
        self.aliases: dict[str, str] = {}  # a name bound by an import or a plain assignment -> what it names
        self.bases: dict[str, list[ast.expr]] = {}
        self.edges: dict[str, set[str]] = {}
        trees = {}
        for file in sorted(package.rglob("*.py")):
            module = self.module_of(file)
            self.files[module] = file
            trees[module] = tree = ast.parse(file.read_text())
            self._index(module, tree)
        for module, tree in trees.items():
            for stmt in tree.body:
                self._edges(module, stmt)

    @staticmethod
    @cache
    def of(package: Path) -> Graph:
        return Graph(package)

    def module_of(self, file: Path) -> str:
        parts = list(file.relative_to(self.package).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def file_of(self, name: str) -> Path:
        module = max((m for m in self.files if name.startswith(f"{m}.") or not m), key=len)
        return self.files[module]

    @staticmethod
    def functions(tree: ast.Module, module: str) -> Iterator[tuple[Function, str]]:
        """Top-level functions and the methods of top-level classes, with their names."""
        for node in tree.body:
            if isinstance(node, FUNCTIONS):
                yield node, _join(module, node.name)
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, FUNCTIONS):
                        yield item, _join(module, f"{node.name}.{item.name}")

    def functions_in(self, modules: tuple[str, ...]) -> Iterator[tuple[str, Function]]:
        for name, kind in self.kinds.items():
            if kind == "function" and (not modules or self._module(name) in modules):
                yield name, self.nodes[name]  # type: ignore[misc]

    def _module(self, name: str) -> str:
        return self.module_of(self.file_of(name))

    def _index(self, module: str, tree: ast.Module) -> None:
        self.aliases.update(self._imports(module, tree, top=True))
        for function, name in self.functions(tree, module):
            self.nodes[name], self.kinds[name] = function, "function"
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                name = _join(module, node.name)
                self.nodes[name], self.kinds[name], self.bases[name] = node, "class", node.bases
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(target, ast.Name):
                        self.nodes[_join(module, target.id)] = node.value
                        self.kinds[_join(module, target.id)] = "constant"

    def _imports(self, module: str, scope: ast.AST, top: bool) -> dict[str, str]:
        """Names bound by the imports of ``scope`` (a module's top level, or a whole function)."""
        out: dict[str, str] = {}
        package = module if self.files.get(module, Path()).name == "__init__.py" else module.rpartition(".")[0]
        stack = list(ast.iter_child_nodes(scope))
        while stack:
            node = stack.pop()
            if top and isinstance(node, (*FUNCTIONS, ast.ClassDef)):
                continue
            stack.extend(ast.iter_child_nodes(node))
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]) if package else ""
                    base = _join(base, node.module or "") if node.module else base
                elif (node.module or "").split(".")[0] == "gpipe_core":
                    base = (node.module or "").partition(".")[2]
                else:
                    continue
                for alias in node.names:
                    out[_join(module, alias.asname or alias.name) if top else alias.asname or alias.name] = \
                        _join(base, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "gpipe_core":
                        bound = alias.asname or "gpipe_core"
                        target = alias.name.partition(".")[2] if alias.asname else ""
                        out[_join(module, bound) if top else bound] = target if target else "<root>"
        return out

    def canonical(self, name: str) -> str:
        """What ``name`` finally names (a function, class, constant or module), following aliases."""
        for _ in range(20):
            if name in self.kinds and self.kinds[name] != "constant":
                return name
            if name in self.aliases:
                name = self.aliases[name]
            elif name in self.kinds:
                value = self.nodes[name]
                if not isinstance(value, (ast.Name, ast.Attribute)):
                    return name
                name = self._resolve(self._module(name), value, {}, None) or name
                if name not in self.aliases and name not in self.kinds:
                    return name
            else:
                return name
        return name

    def _resolve(self, module: str, node: ast.expr, local: dict[str, str], cls: str | None) -> str | None:
        """The package name ``node`` (a name or dotted attribute) refers to, or None."""
        if isinstance(node, ast.Name):
            if node.id in ("self", "cls") and cls:
                return cls
            target = self.canonical(local.get(node.id) or _join(module, node.id))
            target = "" if target == "<root>" else target
            return target if target in self.kinds or target in self.files else None
        if isinstance(node, ast.Attribute):
            base = self._resolve(module, node.value, local, cls)
            if base is None:
                return None
            if base in self.files:
                target = self.canonical(_join(base, node.attr))
                return target if target in self.kinds or target in self.files else None
            if self.kinds.get(base) == "class":
                return next((m for m in self._mro(base) if m.endswith(f".{node.attr}") and m in self.kinds), None)
        return None

    def _mro(self, cls: str) -> list[str]:
        """The methods ``cls`` has, its own first, then those it inherits from package classes."""
        out = self.methods(cls)
        for base in self.bases.get(cls, []):
            resolved = self._resolve(self._module(cls), base, {}, None)
            if resolved and self.kinds.get(resolved) == "class" and resolved != cls:
                out += self._mro(resolved)
        return out

    def _edges(self, module: str, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.ClassDef):
            cls = _join(module, stmt.name)
            self.edges[cls] = set(self.methods(cls))
            for item in stmt.body:
                if isinstance(item, FUNCTIONS):
                    self.edges[f"{cls}.{item.name}"] = self._uses(module, item, cls)
                else:
                    self.edges[cls] |= self._uses(module, item, cls)
        elif isinstance(stmt, FUNCTIONS):
            self.edges[_join(module, stmt.name)] = self._uses(module, stmt, None)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            for target in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                if isinstance(target, ast.Name):
                    self.edges[_join(module, target.id)] = self._uses(module, stmt.value, None)

    def _uses(self, module: str, scope: ast.AST, cls: str | None) -> set[str]:
        """Package functions, classes and constants named anywhere in ``scope`` (parameters and locals excluded)."""
        local = self._imports(module, scope, top=False)
        bound = {a.arg for n in ast.walk(scope) if isinstance(n, ast.arguments)
                 for a in [*n.posonlyargs, *n.args, *n.kwonlyargs, n.vararg, n.kwarg] if a is not None}
        bound |= {n.id for n in ast.walk(scope) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        bound -= {"self", "cls"}
        hints = {id(n) for a in ast.walk(scope) for h in _annotations(a) for n in ast.walk(h)}
        out = set()
        for node in ast.walk(scope):
            if id(node) in hints or isinstance(node, ast.Name) and node.id in bound:
                continue
            if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load):
                found = self._resolve(module, node, local, cls)
                if found in self.kinds and found != cls:
                    out.add(found)
        return out

    def methods(self, cls: str) -> list[str]:
        return [f"{cls}.{n.name}" for n in self.nodes[cls].body if isinstance(n, FUNCTIONS)]

    def implementers(self, protocol: str) -> list[str]:
        """Classes with the protocol's methods (same names and parameters), and every subclass of one."""
        def signature(cls: str) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for method in reversed(self._mro(cls)):
                out[method.rpartition(".")[2]] = [a.arg for a in self.nodes[method].args.args]  # type: ignore[attr-defined]
            return out

        wanted = signature(protocol)
        classes = [c for c, k in self.kinds.items() if k == "class" and c != protocol]
        found = [c for c in classes if all(signature(c).get(m) == a for m, a in wanted.items())]
        grown = True
        while grown:
            subclasses = [c for c in classes if c not in found and any(
                self._resolve(self._module(c), b, {}, None) in found for b in self.bases[c])]
            found += subclasses
            grown = bool(subclasses)
        return found

    def allowed(self, name: str, table: dict[str, str]) -> str:
        """Why ``name`` may keep its body per ``table`` (entries: modules, classes, functions), or ''."""
        for key, why in table.items():
            target = key if key in self.files else self.canonical(key)  # a module, even where a name shadows it
            if name == target or name.startswith(f"{target}."):
                return why
        return ""

    def closure(self, roots: dict[str, str], stop: Callable[[str], bool]) -> dict[str, str]:
        """``roots`` and every function they reach (name -> why), not entering names ``stop`` accepts."""
        reached, todo = dict(roots), list(roots)
        while todo:
            name = todo.pop()
            for used in sorted(self.edges.get(name, ())):
                if used not in reached and not stop(used):
                    reached[used] = f"{name} uses it"
                    todo.append(used)
        return {n: why for n, why in reached.items() if self.kinds.get(n) == "function"}

"""The grading view of gpipe_core: the engine without the references of the assignment being graded.

gpipe_core is open and holds working versions of everything learners build.
Inside the sandbox the probe imports a copy of the package in which the
functions an assignment asks for have no body: calling one raises
``NotImplementedError("graded: ...")``, whatever alias or import path leads to
it, and no in-process guard can be switched off because the code is simply
not there. It is generated from the real package at grading time (an AST
transform of the blocked functions only; every other file is copied as is),
so it never drifts from the engine.

The view is per assignment: the engine's own machinery (``GPipe``, the
runtime, the validator) must keep working where a check runs learner code
inside it, so an assignment blocks only what its learners write. What the
engine itself needs privately (for example ``schedule._place``) stays; a
learner reaching for private names is flagged by the audit instead.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import gpipe_core

PACKAGE = Path(gpipe_core.__file__).resolve().parent

# assignment -> "module.function" or "module.Class.method" (module relative to gpipe_core)
GRADED: dict[str, tuple[str, ...]] = {
    "01_microbatching": ("microbatch.split", "microbatch.weights", "microbatch.join", "reference.sequential_step"),
    "02_partitioner": ("partition.balance_by_count", "partition.balance_by_cost", "partition.balance_by_size",
                       "partition.balance_by_time", "partition.profile_layers"),
    "03_scheduler": ("schedule.gpipe_schedule", "schedule.one_f_one_b_schedule", "schedule.ticks_from_orders"),
    "04_recomputation": ("checkpoint.Recompute.forward", "checkpoint.Recompute.backward"),
    "05_assembling": ("partition.balance_by_cost", "schedule.gpipe_schedule", "checkpoint.Recompute.forward",
                      "checkpoint.Recompute.backward", "theory.bubble_fraction", "theory.ideal_speedup",
                      "theory.peak_held"),
    "06_distributed": ("microbatch.weights", "reference.sequential_step", "distributed.pipe.DistributedPipe._weighted"),
    "07_beat_the_bubble": ("zoo.zb_h1_schedule", "zoo.interleaved_schedule", "puzzle_search.solve"),
}


def _message(assignment: str, name: str) -> str:
    return (f"graded: gpipe_core's {name} has no body while {assignment} is graded; "
            "write this part yourself (your notebook's exercise)")


def _blank(node: ast.FunctionDef | ast.AsyncFunctionDef, message: str) -> None:
    doc = ast.get_docstring(node, clean=False)
    raise_ = ast.Raise(exc=ast.Call(func=ast.Name("NotImplementedError", ast.Load()),
                                    args=[ast.Constant(message)], keywords=[]), cause=None)
    node.body = ([ast.Expr(ast.Constant(doc))] if doc else []) + [raise_]


def _find(tree: ast.Module, path: list[str]) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    body = tree.body
    for depth, name in enumerate(path):
        last = depth == len(path) - 1
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef) if last else (ast.ClassDef,)
        found = [n for n in body if isinstance(n, kinds) and n.name == name]
        if not found:
            return None
        if last:
            return found[-1]
        body = found[-1].body
    return None


def graded(assignment: str) -> tuple[str, ...]:
    """What ``assignment``'s learners build: ``GRADED`` here, or ``BLOCKED`` in its judge module."""
    if assignment in GRADED:
        return GRADED[assignment]
    import importlib

    try:
        module = importlib.import_module(f"{__package__}.{assignment}")
    except ModuleNotFoundError:
        module = None
    if module is None or not hasattr(module, "BLOCKED"):
        raise KeyError(f"no grading view for {assignment!r}: list what its learners build in BLOCKED = (...) in "
                       f"autograder/judge/{assignment}.py (e.g. \"schedule.gpipe_schedule\")")
    return tuple(module.BLOCKED)


def build_view(assignment: str, dest: Path, package: Path = PACKAGE) -> Path:
    """Write the view of ``package`` for ``assignment`` into ``dest/gpipe_core``; returns ``dest`` (for PYTHONPATH)."""
    blocked = graded(assignment)
    dest = Path(dest)
    target = dest / "gpipe_core"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    by_file: dict[Path, list[list[str]]] = {}
    for name in blocked:
        parts = name.split(".")
        for split in range(len(parts) - 1, 0, -1):  # the longest module path that exists
            file = package.joinpath(*parts[:split]).with_suffix(".py")
            if file.exists():
                by_file.setdefault(file, []).append(parts[split:])
                break
        else:
            raise FileNotFoundError(f"grading view: no module for {name!r} in {package}: update GRADED")
    for file, paths in by_file.items():
        tree = ast.parse(file.read_text())
        for path in paths:
            node = _find(tree, path)
            if node is None:
                raise LookupError(f"grading view: {'.'.join(path)} not found in {file}: update GRADED")
            _blank(node, _message(assignment, ".".join(path)))
        out = target / file.relative_to(package)
        out.write_text(ast.unparse(ast.fix_missing_locations(tree)) + "\n")
    init = target / "__init__.py"
    init.write_text(init.read_text() + f"\n__grading_view__ = {assignment!r}\n")
    return dest

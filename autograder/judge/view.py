"""The grading view of gpipe_core: the engine without anything that would solve the assignment being graded.

gpipe_core is open and holds working versions of everything learners build.
Inside the sandbox the probe imports a copy of the package in which those
functions have no body: calling one raises ``NotImplementedError("graded:
...")``, whatever alias, module attribute, ``vars()`` or import path leads to
it, and no in-process guard can be switched off because the code is simply
not there. It is generated from the real package at grading time (an AST
transform of the blocked functions only; every other file is copied as is),
so it never drifts from the engine.

What is blocked is derived, not listed by hand, because a list misses what
nobody thought of (a subclass of the storing policy passes a recomputation
check; ``schedule._place`` is the whole body of ``ticks_from_orders``):

* each exercise names the engine code that would solve it, as a
  :class:`Family`: the functions it mirrors and rules for their siblings (every
  checkpoint policy, every table builder of ``schedule`` and ``zoo``...), so a
  sibling added to the engine later is blocked without anyone remembering.
  The assignment's judge file declares them (``EXERCISES``), from the shared
  families defined here;
* everything those functions call or name inside gpipe_core is blocked too,
  found on the package's call graph (:mod:`.callgraph`), except the engine's
  own machinery in ``ALLOWED`` (the checks run learner code inside it: a
  learner's table on the runtime, a learner's policy in the stages) and what
  an assignment keeps on purpose (``KEEP`` in its judge file: what its notebook
  hands learners as tools), each with the reason it may keep its body.

``tests/test_grading_view.py`` derives the exercises from the solution
notebooks and proves that no body is left on a path back.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import gpipe_core

from . import facts
from .callgraph import Family, Graph

PACKAGE = Path(gpipe_core.__file__).resolve().parent

# -- what would solve an exercise ---------------------------------------------------------------------

SPLIT = Family(("engine.microbatch.split", "engine.microbatch.join"))
WEIGHTS = Family(("engine.microbatch.weights", "distributed.pipe.DistributedPipe._weighted",
                  "distributed.export.TablePipe._weighted"))
BALANCE = Family(("engine.partition.balance_by_cost", "engine.partition.balance_by_size",
                  "engine.partition.balance_by_time"))
# every table builder anywhere in the package (the classic two, the zoo, DualPipe and whatever comes next; the
# validator's checked copy is ALLOWED), and torch's schedules read as tables
TABLES = Family(returns=("Schedule", "list[list[Action]]"),
                names=("distributed.torch_ir.import_torch", "distributed.torch_ir.actions_from_torch",
                       "distributed.torch_ir.from_orders", "distributed.torch_ir.survey"))
FILL_DRAIN = TABLES.plus("schedules.schedule.gpipe_schedule")
POLICIES = Family(("engine.checkpoint.Recompute.forward", "engine.checkpoint.Recompute.backward"),
                  implements="engine.checkpoint.CheckpointPolicy")  # StoreActivations, subclasses of either
THEORY = Family(modules=("sim.theory",))  # every closed form: bubble, speedup, ticks, memory
PUZZLES = TABLES  # the exact search that solves puzzles lives in the grader (judge/puzzle_search.py), not here

# -- what keeps its body ------------------------------------------------------------------------------

_GRAMMAR = "the table's vocabulary and checks: the validator and the runtime read every table with it"
ALLOWED: dict[str, str] = {  # a blocked function may call these; a module name covers all of it
    "schedules.actions": _GRAMMAR, **{f"schedules.schedule.{name}": _GRAMMAR for name in (
        "Action", "ScheduleError", "check_sizes", "_check", "dependencies", "stage_orders", "check_placement",
        "loop_placement", "v_placement")},
    "schedules.schedule.dependency_map": "the validator's dependency rule: it says what waits for what, not when",
    "schedules.schedule.device_orders": "the validator and the runtime read a table's per-device order with it",
    "schedules.schedule.walk": "the validator's deadlock check walks given orders (the engine validates every table "
                               "it runs); it writes no order, which is each schedule exercise's content",
    "schedules.validation": "the validator every table passes before the engine runs it",
    "engine.tensors": "tuple-of-tensors plumbing the stages use on every micro-batch; it computes no exercise",
    "engine.microbatch.positive_int": "argument checks GPipe runs",
    "engine.microbatch.check_chunks": "argument checks GPipe runs",
    "engine.partition.split_module": "GPipe cuts the model at a given balance with it; it chooses no balance",
    "engine.partition.validate_balance": "GPipe checks a given balance with it",
    "engine.rng": "the stages' dropout streams",
    "course.puzzles.Puzzle": "the puzzle's statement (sizes, costs, cap), handed to learners",
    "sim.simulate": "times a given table; the notebooks hand it to learners to check their own",
    **{f"engine.{m}": "the engine that runs learner code in the probe's tasks" for m in (
        "common", "devices", "memory", "mailbox", "stage", "step", "workers", "runtime", "pipe", "trace",
        "split_backward")},
}
def exercises(assignment: str) -> dict[str, Family]:
    """Each exercise of ``assignment`` and the engine code that would solve it (``EXERCISES`` in its judge)."""
    declared = facts.declared(assignment, "EXERCISES", None)
    if declared is None:
        raise KeyError(f"no grading view for {assignment!r}: map each exercise to what would solve it in EXERCISES "
                       f"= {{...}} in autograder/judge/{assignment}.py (e.g. {{'my_schedule': view.FILL_DRAIN}})")
    return dict(declared)  # type: ignore[call-overload]


def kept(assignment: str) -> dict[str, str]:
    """What ``assignment`` keeps on purpose, with why (``KEEP`` in its judge; none by default)."""
    return dict(facts.declared(assignment, "KEEP", {}))  # type: ignore[call-overload]


def graded(assignment: str) -> tuple[str, ...]:
    """The engine functions ``assignment``'s exercises mirror by name (the review compares learner code with them)."""
    return tuple(dict.fromkeys(n for family in exercises(assignment).values() for n in family.names))


def blocked(assignment: str, package: Path = PACKAGE) -> dict[str, str]:
    """Every function and method with no body in ``assignment``'s view (``module.qualname``), and why."""
    graph = Graph.of(package)
    keep = kept(assignment)
    roots: dict[str, str] = {}
    for exercise, family in exercises(assignment).items():
        for name, named in family.members(graph).items():
            if graph.allowed(name, ALLOWED) and named:
                raise LookupError(f"grading view of {assignment}: {name} would solve {exercise} but is in "
                                  f"ALLOWED ({graph.allowed(name, ALLOWED)}): the engine cannot run without it")
            if not graph.allowed(name, ALLOWED) and not graph.allowed(name, keep):
                roots.setdefault(name, f"it would solve {exercise}")
    return graph.closure(roots, lambda name: bool(graph.allowed(name, ALLOWED) or graph.allowed(name, keep)))


def _message(assignment: str, name: str, why: str) -> str:
    return (f"graded: gpipe_core's {name} has no body while {assignment} is graded ({why}); "
            "write this part yourself (your notebook's exercise)")


def _blank(node: ast.FunctionDef | ast.AsyncFunctionDef, message: str) -> None:
    doc = ast.get_docstring(node, clean=False)
    raise_ = ast.Raise(exc=ast.Call(func=ast.Name("NotImplementedError", ast.Load()),
                                    args=[ast.Constant(message)], keywords=[]), cause=None)
    node.body = ([ast.Expr(ast.Constant(doc))] if doc else []) + [raise_]


def build_view(assignment: str, dest: Path, package: Path = PACKAGE) -> Path:
    """Write the view of ``package`` for ``assignment`` into ``dest/gpipe_core``; returns ``dest`` (for PYTHONPATH)."""
    graph = Graph.of(package)
    dest = Path(dest)
    target = dest / "gpipe_core"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    by_file: dict[Path, dict[str, str]] = {}
    for name, why in blocked(assignment, package).items():
        by_file.setdefault(graph.file_of(name), {})[name] = why
    for file, names in by_file.items():
        tree = ast.parse(file.read_text())
        for node, name in Graph.functions(tree, graph.module_of(file)):
            if name in names:
                _blank(node, _message(assignment, name, names.pop(name)))
        if names:
            raise LookupError(f"grading view: {sorted(names)} not found in {file}")
        (target / file.relative_to(package)).write_text(ast.unparse(ast.fix_missing_locations(tree)) + "\n")
    init = target / "__init__.py"
    init.write_text(init.read_text() + f"\n__grading_view__ = {assignment!r}\n")
    return dest

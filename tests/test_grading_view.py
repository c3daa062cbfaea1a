"""The grading view leaves no path back to an answer, and the engine still runs every probe task on it.

What is blocked is derived (``autograder/judge/view.py``): each exercise of a
solution notebook names the engine code that would solve it, and the view
removes that code, its siblings and every private helper on the call graph.
These tests start from the notebooks, not from the view's own lists:

* every exercise a solution notebook defines is declared, so a new exercise
  cannot go unblocked;
* statically, in the built view: every family member of every exercise has no
  body, and every function a blocked body calls has none either or is on an
  allow-list with a reason (so no private helper is left to call instead);
* at run time, in one probe run per assignment on the view (the sandbox's
  probe, without the sandbox): the known attacks (``S._place``, ``vars(S)``,
  ``getattr(S, '_' + 'place')``, ``from ... import _place as p``, a subclass of
  every engine policy through the recomputation check's harness) raise the
  view's error, every function and method of a blocked module called with the
  exercises' usual arguments gives no reference answer, and the first call of
  each probe task the judge asks for runs without meeting a blocked body.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
import pytest
import torch

from autograder import course_root, notebook_names
from autograder.judge import view
from autograder.judge.base import Ask
from autograder.judge.callgraph import Graph
from autograder.judge.grade import draws, judge_module, probe
from autograder.judge.local import run_probe_locally
from autograder.judge.puzzle_search import target
from gpipe_core.course.puzzle_ladder import PRACTICE_ID, ladder
from gpipe_core.course.puzzles import evaluate
from gpipe_core.engine import microbatch, partition
from gpipe_core.schedules.schedule import Action, gpipe_schedule, one_f_one_b_schedule, stage_orders, ticks_from_orders
from gpipe_core.schedules.zoo import interleaved_schedule, zb_h1_schedule
from gpipe_core.sim import theory

LADDER = ladder(PRACTICE_ID)  # the puzzles of a notebook without a student id

ASSIGNMENTS = sorted(p.name for p in (course_root() / "solutions").iterdir() if p.is_dir() and p.name[0].isdigit())
GRAPH = Graph.of(view.PACKAGE)


def exercises_of(assignment: str) -> set[str]:
    """Top-level functions and classes of the solution notebook's ``### BEGIN SOLUTION`` cells."""
    nb = nbformat.read(course_root() / "solutions" / assignment / f"{notebook_names(assignment)[0]}.ipynb", 4)
    names = set()
    for cell in nb.cells:
        if cell.cell_type == "code" and "### BEGIN SOLUTION" in cell.source:
            tree = ast.parse("\n".join(ln for ln in cell.source.splitlines() if not ln.strip().startswith("%")))
            names |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    return names


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_exercise_says_what_would_solve_it(assignment: str) -> None:
    declared = view.exercises(assignment)
    assert set(declared) == exercises_of(assignment)
    for exercise, family in declared.items():
        assert family.names or family.modules or family.returns or family.implements or family.why.strip(), \
            f"{exercise}: name what in gpipe_core would solve it, or say why nothing does"


def test_the_call_graph_follows_every_kind_of_alias() -> None:
    edges = GRAPH.edges
    assert "schedules.schedule._place" in edges["schedules.schedule.ticks_from_orders"]  # a private helper, same module
    assert "engine.checkpoint.Recompute.graph" in edges["engine.checkpoint.Recompute.backward"]  # self.method
    assert "engine.partition.balance_by_count" in edges["engine.pipe.GPipe.__init__"]  # from . import partition
    assert "schedules.tick_fill.Counts" in edges["schedules.tick_fill.fill_ticks"]
    assert "schedules.tick_fill.Counts.next" in edges["schedules.tick_fill.Counts"]
    assert GRAPH.canonical("schedules.schedule._check") == "schedules.schedule.check_sizes"  # a module alias
    assert GRAPH.canonical("gpipe_schedule") == "schedules.schedule.gpipe_schedule"  # the package's re-export
    assert "engine.pipe.GPipe.__init__" not in edges["engine.runtime.Runtime.run"]  # no edge where nothing names it


def _bodies(view_root: Path) -> dict[str, bool]:
    """Every function and method of the built view -> whether it still has a body."""
    out = {}
    for file in (view_root / "gpipe_core").rglob("*.py"):
        module = GRAPH.module_of(view.PACKAGE / file.relative_to(view_root / "gpipe_core"))
        for node, name in Graph.functions(ast.parse(file.read_text()), module):
            body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            out[name] = not (len(body) == 1 and isinstance(body[0], ast.Raise))
    return out


def paths_back(assignment: str, root: Path) -> list[str]:
    """Bodies left in the view at ``root`` that would solve an exercise or that a blocked body relies on."""
    bodies, keep, found = _bodies(root), view.kept(assignment), []

    def excused(name: str) -> str:
        return GRAPH.allowed(name, view.ALLOWED) or GRAPH.allowed(name, keep)

    for exercise, family in view.exercises(assignment).items():
        for name, named in family.members(GRAPH).items():
            if bodies[name] and (not excused(name) or named and GRAPH.allowed(name, view.ALLOWED)):
                found.append(f"{name} would solve {exercise} and keeps its body")
    blank = {name for name, has in bodies.items() if not has}
    for name in blank:
        for callee in _functions_named(GRAPH.edges.get(name, ()), set()):
            if callee not in blank and not excused(callee):
                found.append(f"{name} has no body, but {callee}, which it uses, has one and no reason to")
    return found


def _functions_named(names: Iterable[str], seen: set[str]) -> list[str]:
    """The functions behind ``names``: a class stands for its methods, a constant for what its value names."""
    out = []
    for name in sorted(set(names) - seen):
        seen.add(name)
        kind = GRAPH.kinds[name]
        out += GRAPH.methods(name) if kind == "class" else [name] if kind == "function" else \
            _functions_named(GRAPH.edges.get(name, ()), seen)
    return out


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_no_body_is_left_on_a_path_back(assignment: str, tmp_path: Path) -> None:
    for table in (view.ALLOWED, view.kept(assignment)):
        for key, why in table.items():
            assert why.strip(), f"{key} keeps its body without a reason"
            assert key in GRAPH.files or GRAPH.canonical(key) in GRAPH.kinds, f"{key}: no such thing in gpipe_core"
    assert paths_back(assignment, view.build_view(assignment, tmp_path)) == []


def test_a_helper_left_with_its_body_is_found(tmp_path: Path) -> None:
    """The view as it was before issue 23 (only the named functions blank) fails the check above."""
    root = view.build_view("03_scheduler", tmp_path)
    file = root / "gpipe_core" / "schedules" / "schedule.py"
    tree = ast.parse(file.read_text())
    original = {n.name: n for n in ast.parse((view.PACKAGE / "schedules" / "schedule.py").read_text()).body
                if isinstance(n, ast.FunctionDef)}
    tree.body = [original["_place"] if isinstance(n, ast.FunctionDef) and n.name == "_place" else n for n in tree.body]
    file.write_text(ast.unparse(tree))
    found = paths_back("03_scheduler", root)
    assert "schedules.schedule._place would solve fill_drain_schedule and keeps its body" in found
    assert "schedules.schedule.ticks_from_orders has no body, but schedules.schedule._place, which it uses, has one " \
           "and no reason to" in found
    assert all("schedules.schedule._place" in line for line in found), found


# ---- at run time, through the probe ------------------------------------------------------------------

# learner code, as a hostile notebook would define it: appended to the solution's probe module
ATTACKS = (Path(__file__).parent / "helpers" / "view_attacks.py").read_text()

X = torch.arange(20.0).reshape(10, 2)
CHUNKS = microbatch.split(X, 4)
SPEC = {"seed": 1, "layers": [["Linear", 4, 8], ["Dropout", 0.5], ["Tanh"], ["Linear", 8, 8], ["Linear", 8, 3]]}
GEN = torch.Generator().manual_seed(0)
PX, PG, PY = torch.randn(6, 4, generator=GEN), torch.randn(6, 3, generator=GEN), torch.randint(0, 3, (6,))


def _cases(assignment: str) -> list[tuple[list, list[Any]]]:
    """(arguments, reference answers) the exercises of ``assignment`` are usually called with."""
    parts = {"01": [([X, 4], [CHUNKS]), ([CHUNKS], [microbatch.weights(CHUNKS), X])],
             "02": [([[1.0, 1.0, 1.0, 1.0, 4.0], 2], [partition.balance_by_cost([1.0, 1.0, 1.0, 1.0, 4.0], 2)]),
                    ([10, 4], [partition.balance_by_count(10, 4)])],
             "03": [([4, 3], [gpipe_schedule(4, 3), one_f_one_b_schedule(4, 3)]),
                    ([stage_orders(gpipe_schedule(4, 3), 3)], [gpipe_schedule(4, 3)])],
             "05": [([8, 4], [theory.bubble_fraction(8, 4), theory.ideal_speedup(8, 4),
                              theory.peak_held("gpipe", 8, 4)])],
             "07": [([8, 4], [zb_h1_schedule(8, 4), interleaved_schedule(8, 4)])]
             + [([f"puzzle:{i}"], ["puzzle"]) for i in range(len(LADDER))]}
    parts["05"] += parts["02"][:1] + parts["03"]
    parts["08"] = parts["02"][:1] + parts["03"]
    parts["06"] = [([CHUNKS], [microbatch.weights(CHUNKS)])]
    return parts.get(assignment[:2], [])


# importing torch_ir costs seconds (torch.distributed.pipelining): its bodies are swept once, in 03's view, the
# static test above proves them blank in every view that blocks them
_ELSEWHERE = {a: ("distributed.torch_ir",) for a in ("05_assembling", "07_beat_the_bubble", "08_language_model")}


def _table(value: Any) -> list[list[str]] | None:
    if type(value) is list and value and all(type(t) is list for t in value) and \
            all(type(a) is Action for t in value for a in t):
        return [sorted(map(repr, t)) for t in value]
    return None


def reaches(value: Any, want: Any, args: list) -> bool:
    """Whether ``value`` (what a view function returned) is the reference answer ``want``."""
    if want == "puzzle":
        p = LADDER[int(args[0][7:])]
        table = _table(value)
        for candidate in ([value, ticks_from_orders(value, p.placement)] if table else []):
            try:
                got = evaluate(p, candidate)
            except Exception:  # noqa: BLE001, S112 - not a table of this puzzle
                continue
            if got.time <= target(p) and (p.cap is None or max(got.peak) <= p.cap):
                return True
        return False
    if isinstance(want, torch.Tensor):
        return type(value) is torch.Tensor and value.shape == want.shape and torch.allclose(value.float(), want)
    if _table(want) is not None:
        return _table(value) == _table(want)
    if isinstance(want, list):
        return type(value) in (list, tuple) and len(value) == len(want) and all(
            reaches(v, w, args) for v, w in zip(value, want))
    if isinstance(want, float):
        return type(value) in (int, float) and math.isclose(value, want, rel_tol=1e-9)
    return value == want


def _first_of_each_task(assignment: str) -> Ask:
    """The judge's first call of each probe task (and of each learner function), queued on a fresh ``Ask``."""
    every = Ask()
    for grade_id, check in judge_module(assignment).CHECKS.items():
        every.group = grade_id
        check(every, draws(0, assignment, grade_id))
    firsts: dict[tuple, int] = {}
    for i, call in enumerate(every.calls):
        firsts.setdefault((call["task"], repr(call["params"].get("fn"))), i)
    ask = Ask()
    ask.calls, ask.replies = [every.calls[i] for i in firsts.values()], [every.replies[i] for i in firsts.values()]
    return ask


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_no_attack_reaches_an_answer_and_every_task_still_runs(assignment: str) -> None:
    from autograder.judge.extract import extract

    solution = course_root() / "solutions" / assignment / f"{notebook_names(assignment)[0]}.ipynb"
    ask = _first_of_each_task(assignment)
    tasks = list(ask.replies)
    ask.group = "attacks"
    cases = _cases(assignment)
    modules = sorted({GRAPH._module(n) for n in view.blocked(assignment)} - set(_ELSEWHERE.get(assignment, ())))
    sweep = ask.call("view_sweep", modules, [args for args, _ in cases], timeout=120)
    blocked = view.blocked(assignment)
    aliases = ask.call("alias_attacks", stage_orders(gpipe_schedule(3, 2), 2)) \
        if "schedules.schedule._place" in blocked else None
    policies = ask.call("policy_attacks", SPEC, PX, PG, PY) if "engine.checkpoint.StoreActivations.forward" in blocked \
        else None
    weights = ask.call("weights_attacks", X, X) if "engine.microbatch.weights" in blocked else None
    learner = SimpleNamespace(source=extract(assignment, solution).source + ATTACKS)
    ask.attach(probe(learner, {"assignment": assignment, "calls": ask.calls}, run_probe_locally))

    for reply in tasks:  # the engine needs no blocked body to run the probe's tasks (the solution scores)
        error = reply.error or {}
        assert "graded:" not in error.get("message", ""), f"{reply.what}: {error}"
    for attack in (aliases, policies, weights):
        if attack is not None:
            assert set(attack.value().values()) <= {"blocked", "raised StageError (blocked)"}, attack.value()
    outcomes = sweep.value()
    reached = [key for key, value in outcomes.items() for want in cases[int(key.split("#")[1])][1]
               if not isinstance(value, str) and reaches(value, want, cases[int(key.split("#")[1])][0])]
    assert not reached, f"functions with a body in the view give a reference answer: {reached}"
    called = {key.split("#")[0]: value for key, value in outcomes.items()}
    swept = {n for n in blocked if GRAPH._module(n) in modules}
    assert not cases or swept <= set(called), swept - set(called)
    escaped = {n: v for n, v in outcomes.items()
               if n.split("#")[0] in blocked and v not in ("blocked", "raised TypeError")}
    assert not escaped, f"blocked functions answered in the view: {escaped}"

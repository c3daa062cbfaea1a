"""The references are out of reach while grading, for a structural reason.

The probe imports the grading view of gpipe_core (``autograder.judge.view``):
the functions an assignment asks for have no body there, so no alias, reload,
cloned code object or patched guard can bring them back, while the engine the
checks run learner code in keeps working. Each test runs a fresh interpreter
on a view, as the probe does.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import assignments
from autograder.judge.view import build_view, graded

TRICKS = '''
import importlib, sys, torch
import gpipe_core, gpipe_core.engine.partition as part
from gpipe_core import balance_by_cost as early_alias
assert gpipe_core.__grading_view__ == "02_partitioner"
attempts = {
    "alias imported early": lambda: early_alias([1.0, 2.0, 3.0], 2),
    "module attribute": lambda: part.balance_by_cost([1.0, 2.0], 2),
    "after importlib.reload": lambda: importlib.reload(part).balance_by_cost([1.0, 2.0], 2),
    "a clone of the code object": lambda: type(early_alias)(part.balance_by_cost.__code__, part.__dict__)([1.0], 1),
    "balance_by_time (calls balance_by_cost)": lambda: part.balance_by_time(torch.nn.Sequential(torch.nn.Tanh()),
                                                                           torch.zeros(2, 2), 1),
    "by count": lambda: part.balance_by_count(4, 2),
}
for name, attempt in attempts.items():
    try:
        attempt()
    except NotImplementedError as exc:
        assert "graded" in str(exc), exc
        print("blocked:", name)
    else:
        print("REACHED:", name)
print("split_module:", [len(s) for s in part.split_module(torch.nn.Sequential(*[torch.nn.Tanh()] * 5), [2, 3])])
'''

ENGINE = '''
import torch
from torch import nn
import gpipe_core
from gpipe_core import GPipe
from gpipe_core.engine.checkpoint import StoreActivations
assert gpipe_core.__grading_view__ == "04_recomputation"


class Keep:  # a learner's own (storing) policy: the engine runs it, whatever the view blocks
    def forward(self, run, x, rng):
        x = x.detach().requires_grad_(x.requires_grad)
        with torch.enable_grad():
            out = run(x)
        return out.detach(), (x, out)

    def backward(self, run, saved, grad_output, rng):
        x, out = saved
        torch.autograd.backward(out, grad_output)
        return x.grad


model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2), nn.Linear(4, 2))
x, y = torch.randn(6, 4), torch.randint(0, 2, (6,))
loss = GPipe(model, balance=[2, 1], chunks=3, checkpoint=Keep(), devices="cpu").step(
    x, y, nn.functional.cross_entropy, seed=1)
print("engine runs a policy:", bool(torch.isfinite(loss)))
try:
    StoreActivations().forward(model, x, None)
except NotImplementedError as exc:
    print("storing policy:", "graded" in str(exc))
try:
    GPipe(model, balance=[2, 1], chunks=3, checkpoint="always", devices="cpu").step(
        x, y, nn.functional.cross_entropy, seed=1)
except Exception as exc:
    print("built-in recompute:", type(exc).__name__, "graded" in str(exc))
'''


def run_in_view(assignment: str, code: str, tmp_path: Path) -> str:
    view = build_view(assignment, tmp_path / "view")
    env = {**os.environ, "PYTHONPATH": str(view), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_no_path_leads_back_to_a_blocked_reference(tmp_path: Path) -> None:
    out = run_in_view("02_partitioner", TRICKS, tmp_path)
    assert "REACHED" not in out, out
    assert out.count("blocked:") == 6
    assert "split_module: [2, 3]" in out  # what learners do not write stays usable


def test_the_engine_still_runs_learner_policies_in_the_view(tmp_path: Path) -> None:
    out = run_in_view("04_recomputation", ENGINE, tmp_path)
    assert "engine runs a policy: True" in out
    assert "built-in recompute: StageError True" in out  # the engine's own Recompute has no body either
    assert "storing policy: True" in out  # nor its storing one: a subclass would pass a gradient check


@pytest.mark.parametrize("assignment", assignments())
def test_every_graded_function_is_blank_in_its_view(assignment: str, tmp_path: Path) -> None:
    view = build_view(assignment, tmp_path) / "gpipe_core"
    for name in graded(assignment):
        parts = name.split(".")
        split = next(i for i in range(len(parts) - 1, 0, -1) if view.joinpath(*parts[:i]).with_suffix(".py").exists())
        body = ast.parse(view.joinpath(*parts[:split]).with_suffix(".py").read_text()).body
        for part in parts[split:-1]:
            body = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == part).body
        (fn,) = [n for n in body if isinstance(n, ast.FunctionDef) and n.name == parts[-1]]
        statements = [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        assert len(statements) == 1 and isinstance(statements[0], ast.Raise), name
    assert (view / "__init__.py").read_text().rstrip().endswith(f"__grading_view__ = {assignment!r}")

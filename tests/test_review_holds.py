"""Holds: loaded code that can tamper with the probe's own process is held, line and rule named; honest code never is.

Each hostile snippet below replaces 02's ``partition_by_count`` cell and must
be held under the rule given; each honest one (names that only look like
modules, ``super().__init__``, a namedtuple's ``_replace``...) must not. Every
solution notebook and every planted mistake must pass without a hold.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from autograder import assignments, notebook_names
from autograder.judge.extract import extract
from autograder.review.findings import Finding, flag, hold, review_rows
from autograder.review.run import holds, review_submission
from autograder.selftest.fakeclass import planted, replace_cell, solved

A = "02_partitioner"
HEAD = "def partition_by_count(n, K):\n"

HOSTILE = {  # name -> (source of the cell, the rule that must hold it, the line it names)
    "exec": (HEAD + "    exec('x = 1')\n    return [1] * K\n", "dynamic-code", 2),
    "encoded exec": (HEAD + "    import base64\n    return eval(base64.b64decode('eA=='))\n", "import", 2),
    "eval in a default": ("def partition_by_count(n, K, g=globals):\n    return [1] * K\n", "dynamic-code", 1),
    "getattr computed": (HEAD + "    f = getattr(torch, 'o' + 's')\n    return [1] * K\n", "by-name", 2),
    "getattr literal": (HEAD + "    f = getattr(torch, 'os')\n    return [1] * K\n", "module", 2),
    "getattr passed": ("import functools\n" + HEAD + "    g = functools.partial(getattr, torch)\n    return g\n",
                       "by-name", 3),
    "module via torch": (HEAD + "    torch.os.system('true')\n    return [1] * K\n", "module", 2),
    "module via alias": (HEAD + "    t = torch\n    t.os.system('true')\n    return [1] * K\n", "module", 3),
    "module at the top": ("T = torch.os\n" + HEAD + "    return [1] * K\n", "module", 1),
    "globals of a function": (HEAD + "    g = partition_by_count.__globals__\n    return [1] * K\n", "dunder", 2),
    "subclasses": (HEAD + "    s = ().__class__.__base__.__subclasses__()\n    return [1] * K\n", "dunder", 2),
    "frames": (HEAD + "    g = (i for i in [1])\n    f = g.gi_frame.f_back\n    return [1] * K\n", "module", 3),
    "patch torch": (HEAD + "    torch.equal = lambda *a: True\n    return [1] * K\n", "module-write", 2),
    "global": (HEAD + "    global Action\n    Action = None\n    return [1] * K\n", "global", 2),
    "import gc": (HEAD + "    import gc\n    return [1] * K\n", "import", 2),
    "cpp extension": (HEAD + "    from torch.utils import cpp_extension\n    return [1] * K\n", "import", 2),
    "private torch": (HEAD + "    return torch._C._get_tracing_state()\n", "private", 2),
    "module hooks": (HEAD + "    torch.nn.modules.module.register_module_forward_hook(print)\n    return [1] * K\n",
                     "module", 2),
    "saved tensor hooks": (HEAD + "    with torch.autograd.graph.saved_tensors_hooks(id, id):\n        pass\n"
                           "    return [1] * K\n", "module", 2),
    "__del__": ("class Spy:\n    def __del__(self):\n        pass\n\n\n" + HEAD + "    return [1] * K\n",
                "dunder-method", 2),
    "module __getattr__": ("def __getattr__(name):\n    return 1\n\n\n" + HEAD + "    return [1] * K\n",
                           "dunder-method", 1),
    "tensor subclass": ("class Eq(torch.Tensor):\n    pass\n\n\n" + HEAD + "    return [1] * K\n", "subclass", 1),
    "shadowed only in a comprehension": (HEAD + "    [eval for eval in [1]]\n    return eval('[1]') * K\n",
                                         "dynamic-code", 3),
    "private import": ("from torch import _C\n\n\n" + HEAD + "    return [1] * K\n", "import", 1),
    "default dtype": (HEAD + "    torch.set_default_dtype(torch.float64)\n    return [1] * K\n", "module", 2),
    "a module by name": (HEAD + "    return [len(inspect.stack())] * K\n", "module", 2),
}

HONEST = {
    "locals named like modules": HEAD + "    ops, graph, types, hooks = [], {}, set(), 0\n    ops.append(graph)\n"
                                        "    return [n // K + (j < n % K) for j in range(K)]\n",
    "protocol and super": "class Counter(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                          "        self._seen = 0\n\n    def __repr__(self):\n        return type(self).__name__\n\n\n"
                          + HEAD + "    c = Counter()\n    return [n // K] * K\n",
    "namedtuple api and literal getattr": HEAD + "    a = Action('F', 0, 0)._replace(stage=1)\n"
                                                 "    size = getattr(a, 'stage', 0)\n    return [size] * K\n",
    "own class attribute": "class Memo:\n    hits = 0\n\n\n" + HEAD + "    Memo.hits += 1\n    return [1] * K\n",
    "own object attributes": HEAD + "    class Box:\n        pass\n    b = Box()\n    b.value = n\n"
                                    "    return [b.value // K] * K\n",
}


def _notebook(source: str) -> object:
    return replace_cell(solved(A, notebook_names(A)[0], Path("notebooks")), "partition_by_count", source)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_tampering_code_is_held_naming_line_and_rule(name: str) -> None:
    source, rule, line = HOSTILE[name]
    found = holds(A, extract(A, _notebook(source)))
    assert any(f.rule == rule and f.where == f"cell partition_by_count, line {line}" for f in found), found
    assert all(f.kind == "hold" and f.held and f.code == "HELD" for f in found)
    assert any(f in review_submission(A, _notebook(source)) for f in found)  # the review carries them


@pytest.mark.parametrize("name", list(HONEST))
def test_honest_code_that_looks_alike_is_not_held(name: str) -> None:
    assert holds(A, extract(A, _notebook(HONEST[name]))) == []


@pytest.mark.parametrize("assignment", assignments())
def test_no_solution_and_no_planted_mistake_is_held(assignment: str) -> None:
    correct = solved(assignment, notebook_names(assignment)[0], Path("notebooks"))
    assert holds(assignment, extract(assignment, correct)) == []
    for mistake in planted(assignment):
        found = holds(assignment, extract(assignment, replace_cell(correct, mistake["cell"], mistake["source"])))
        assert found == [], f"planted mistake {mistake['name']} is held: {found}"


def test_a_module_the_course_imports_is_still_held_in_learner_code() -> None:
    """04's prelude imports ``inspect`` for its own helpers; a learner's policy that uses it is held all the same."""
    a = "04_recomputation"
    policy = ("class MyRecompute:\n    def forward(self, run, x, rng):\n        inspect.stack()\n"
              "        return run(x), None\n\n    def backward(self, run, saved, grad_output, rng):\n"
              "        return None\n")
    nb = replace_cell(solved(a, notebook_names(a)[0], Path("notebooks")), "recompute", policy)
    assert [(f.rule, f.where) for f in holds(a, extract(a, nb))] == [("module", "cell recompute, line 3")]


def test_a_dropped_statement_is_not_held_it_never_runs() -> None:
    """Statements around the definitions never reach the probe: they are the extractor's to report, not holds."""
    source = "import os\nos.system('true')\n" + HEAD + "    return [n // K] * K\n"
    assert holds(A, extract(A, _notebook(source))) == []


def test_a_finding_is_its_line_and_its_fields() -> None:
    f = hold("dynamic-code", "cell x, line 3", "uses exec")
    assert f.line() == str(f) == "held for review: cell x, line 3: uses exec [dynamic-code]"
    assert (f.kind, f.rule, f.where, f.evidence, f.code) == ("hold", "dynamic-code", "cell x, line 3", "uses exec",
                                                             "HELD")
    g = flag("copied-engine", "f (cell f, line 1)", "90% alike")
    assert g.line().startswith("flagged for review: ") and g.code == "FLAGGED" and not g.held
    assert pickle.loads(pickle.dumps(f)).fields() == f.fields() and json.loads(json.dumps([f])) == [f.line()]
    with pytest.raises(ValueError, match="'flag' or 'hold'"):
        Finding("warn", "x", "", "y")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="evidence"):
        flag("x", "here", "")
    rows = review_rows(A, {"ada": [f, g]})
    assert [(r["kind"], r["rule"]) for r in rows] == [("hold", "dynamic-code"), ("flag", "copied-engine")]
    assert rows[0]["reason"] == "cell x, line 3: uses exec [dynamic-code]"

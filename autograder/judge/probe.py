"""The probe: call a learner's definitions on the judge's inputs, each task in a fresh child, and report plain data.

Runs inside the sandbox as ``python probe.py LEARNER_MODULE`` with the judge's
request (JSON) on stdin. This process (the *harness*) imports torch and the
grading view once, compiles the learner's module (compiling runs nothing) and
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
import select
import signal
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import torch

if __package__:  # imported by the judge and its tests
    from . import probe_codec as codec
    from . import probe_tasks as tasks
else:  # run as a script in the sandbox, beside copies of its helpers
    import probe_codec as codec
    import probe_tasks as tasks

REPLY_CAP = 48 << 20  # bytes one call may send back (tensors as raw bytes)
OPTIMIZING = {"train", "assemble", "micro_batch_loss"}  # tasks that step an optimizer


def batches(calls: list[dict]) -> Iterator[list[int]]:
    """Call numbers grouped per child: a measured task alone, consecutive plain calls of one check together."""
    i = 0
    while i < len(calls):
        j = i + 1
        if calls[i]["task"] not in tasks.MEASURED:
            while (j < len(calls) and calls[j]["task"] not in tasks.MEASURED
                   and calls[j].get("group") == calls[i].get("group")):
                j += 1
        yield list(range(i, j))
        i = j


class LoadFailed(Exception):
    """The learner's module raised while its definitions loaded (an import that is not there, say)."""


def _load(code: Any) -> types.ModuleType:
    module = types.ModuleType("learner")
    module.__file__ = "learner.py"
    sys.modules["learner"] = module
    exec(code, module.__dict__)  # noqa: S102 - the learner's extracted definitions, in the sandboxed child only
    return module


def _answer(code: Any, calls: list[dict], todo: list[int], w: int, nonce: bytes) -> None:
    """The child: load the definitions, answer ``todo`` in order on pipe ``w``, exit without cleanup."""
    try:
        module, failure = _load(code), None
    except BaseException as exc:  # noqa: BLE001 - reported with every call
        module, failure = None, tasks.error_data(exc)
    for i in todo:
        call = calls[i]
        try:
            if module is None:
                raise LoadFailed(f"your definitions could not be loaded: {failure['type']}: {failure['message']}")
            params = {k: codec.decode(v) for k, v in call["params"].items()}
            reply: dict[str, Any] = {"ok": codec.encode(tasks.TASKS[call["task"]](module, **params))}
        except LoadFailed as exc:
            reply = {"error": {**tasks.error_data(exc), "type": "ImportError", "load": failure}}
        except BaseException as exc:  # noqa: BLE001 - whatever learner code raises is data
            reply = {"error": tasks.error_data(exc)}
        try:
            data = json.dumps(reply).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            data = json.dumps({"error": tasks.error_data(exc)}).encode()
        view = memoryview(b"%s %d\n" % (nonce, len(data)) + data)
        while view:
            view = view[os.write(w, view):]
    os._exit(0)


def _spawn(code: Any, calls: list[dict], todo: list[int], channel: int) -> tuple[int, int, bytes]:
    nonce = os.urandom(16).hex().encode()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no way back to the judge's channel or to the replies of other children
        try:
            os.close(r)
            os.close(channel)
            os.setpgid(0, 0)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _answer(code, calls, todo, w, nonce)
        finally:
            os._exit(70)
    os.close(w)
    return pid, r, nonce


class _Frames:
    """Framed replies read from one child's pipe; ``bad`` once anything on it was not the harness's frame."""

    def __init__(self, nonce: bytes) -> None:
        self.nonce, self.buf, self.bad, self.total = nonce, bytearray(), False, 0

    def feed(self, chunk: bytes) -> list[dict]:
        self.buf += chunk
        self.total += len(chunk)
        out = []
        while not self.bad:
            end = self.buf.find(b"\n", 0, 80)
            if end < 0:
                self.bad = len(self.buf) >= 80
                break
            head = bytes(self.buf[:end]).split(b" ")
            if len(head) != 2 or head[0] != self.nonce or not head[1].isdigit():
                self.bad = True
                break
            size = int(head[1])
            if len(self.buf) < end + 1 + size:
                break
            body = bytes(self.buf[end + 1:end + 1 + size])
            del self.buf[:end + 1 + size]
            try:
                reply = json.loads(body)
            except (ValueError, RecursionError):
                self.bad = True
                break
            out.append(reply if isinstance(reply, dict) else {"error": _broken("a reply that is not an object")})
        return out


def _broken(what: str) -> dict:
    return {"type": "Tampered", "where": None, "message": f"the probe received {what}: the call's answer was "
            "written by something other than the grader's harness"}


def run_batch(code: Any, calls: list[dict], todo: list[int], channel: int) -> Iterator[dict]:
    """One child for ``todo``; yields one reply per call it settled (stops early when the child must go)."""
    pid, r, nonce = _spawn(code, calls, todo, channel)
    frames, k = _Frames(nonce), 0
    start = time.monotonic()
    try:
        while k < len(todo):
            timeout = float(calls[todo[k]].get("timeout", 60))
            ready, _, _ = select.select([r], [], [], max(0.0, start + timeout - time.monotonic()))
            if not ready:
                yield {"i": todo[k], "timeout": timeout, "seconds": time.monotonic() - start}
                return
            chunk = os.read(r, 1 << 20)
            replies = frames.feed(chunk) if chunk else []
            for reply in replies:
                now = time.monotonic()
                yield {**reply, "i": todo[k], "seconds": now - start}
                k, start = k + 1, now
                if k == len(todo):
                    return
            if frames.bad or frames.total > REPLY_CAP * len(todo):
                what = "more bytes than a reply may hold" if not frames.bad else "bytes that are not a reply"
                yield {"i": todo[k], "error": _broken(what), "tampered": True, "seconds": time.monotonic() - start}
                return
            if not chunk:  # the child ended (os._exit, a crash, the memory limit) before answering this call
                yield {"i": todo[k], "seconds": time.monotonic() - start, "error": {
                    "type": "ProcessDied", "where": None, "message": "the process running this call ended before "
                    f"it answered ({_status(pid)}): os._exit, a crash or the memory limit"}}
                return
    finally:
        os.close(r)
        _reap(pid)


def _status(pid: int) -> str:
    try:
        done, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "already reaped"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _reap(pid: int) -> None:
    """Kill the child's whole process group (whatever it started) and collect it."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def serve(code: Any, calls: list[dict], channel: int) -> Iterator[dict]:
    """Every call's reply, in order, each batch in fresh children until all are settled.

    Once a call of a check has run out of time, that check has failed: its later calls are not run (so
    an endless loop costs one call's time per check, not one per call).
    """
    stalled: set[str] = set()
    for todo in batches(calls):
        while todo:
            if calls[todo[0]].get("group") in stalled:
                yield {"i": todo[0], "error": {"type": "NotRun", "where": None, "message": "not run: an earlier "
                       "call of this check did not finish in its time"}, "seconds": 0.0}
                todo = todo[1:]
                continue
            settled = list(run_batch(code, calls, todo, channel))
            yield from settled
            if settled and "timeout" in settled[-1]:
                stalled.add(calls[todo[len(settled) - 1]].get("group"))
            todo = todo[len(settled):]


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


def main(argv: list[str]) -> None:
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")  # the judge's channel; print() now goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _not_dumpable()
    torch.set_num_threads(1)
    request = json.load(sys.stdin)
    key = request.get("key")

    def emit(line: dict) -> None:
        out.write(json.dumps({**line, "key": key}) + "\n")
        out.flush()

    import gpipe_core

    header: dict[str, Any] = {"probe": 2, "view": getattr(gpipe_core, "__grading_view__", None), "load_error": None}
    with open(argv[0], encoding="utf-8") as fh:
        source = fh.read()
    try:
        code = compile(source, "learner.py", "exec")
        preload(source)
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
    out.close()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])

"""The probe's children: one per measured task or per check's plain calls, each with a pipe of its own.

The harness (``probe.py``) forks a child for each batch of calls; the child
loads the learner's definitions, answers its calls on its own pipe, framed
with a nonce only the harness and that child hold, and exits without
cleanup. The harness waits on the pipe with each call's deadline, kills the
child's process group when a call runs past it, and reads frames: anything on
the pipe that is not one is ``tampered``. A child that dies costs its call;
the rest of its batch goes on in a fresh child, and a check whose call ran out
of time runs no further calls.
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

if __package__:  # imported by the judge and its tests
    from . import probe_codec as codec
    from . import probe_tasks as tasks
else:  # run in the sandbox, beside copies of its helpers
    import probe_codec as codec
    import probe_tasks as tasks

REPLY_CAP = 48 << 20  # bytes one call may send back (tensors as raw bytes)


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

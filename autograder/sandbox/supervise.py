"""Watching a started sandbox until it ends, and cleaning up after it: output caps, timeouts, leftovers.

:mod:`autograder.sandbox.launch` builds the command (bubblewrap and its mounts);
this module runs it. ``Started`` is a sandbox whose command is already
running and waiting for its input: ``finish(stdin, timeout)`` feeds it, waits
at most ``timeout`` seconds counted from then, kills what is left and returns
the :class:`SandboxResult`. Starting one ahead lets a grading worker import
torch in the next submission's sandbox while it judges the current one. A
probe zygote (``cycle/zygote.py``) serves many submissions in one sandbox: it
is started with ``stream=True`` and its output read as it comes.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .limits import Limits
from .treelimits import TreeLimits, kill_until_gone


@dataclass(frozen=True)
class SandboxResult:
    returncode: int
    stdout: bytes  # at most limits.output_bytes_notebook
    stderr: bytes  # idem
    timed_out: bool
    killed_reason: str | None  # why the sandbox was stopped or limited, for the log line; None if it was not



class Started:
    """A sandbox's helper process, running; its output is drained into capped buffers from the start."""

    def __init__(self, helper: list[str], limits: Limits, tree: TreeLimits, uid: int | None,
                 cleanup: Any = None, stream: bool = False) -> None:
        self.proc = subprocess.Popen(helper, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.limits, self.tree, self.uid, self.cleanup = limits, tree, uid, cleanup
        self.cap = limits.output_bytes_notebook
        self.out, self.err = bytearray(), bytearray()
        pipes = ((self.proc.stdout, self.out), (self.proc.stderr, self.err))[1 if stream else 0:]
        self.readers = [threading.Thread(target=_drain, args=(pipe, buf, self.cap), daemon=True)
                        for pipe, buf in pipes]  # stream: the caller reads stdout itself (a zygote's frames)
        for r in self.readers:
            r.start()

    def finish(self, stdin: bytes | None, timeout: float) -> SandboxResult:
        """Give the command its input, wait up to ``timeout`` s from now, clean up; the result."""
        proc = self.proc
        threading.Thread(target=_feed, args=(proc.stdin, stdin or b""), daemon=True).start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()  # bwrap; its init dies with it (--die-with-parent) and takes the PID namespace along
            if self.uid is None:  # no PID namespace: the process group of the unsandboxed command
                _kill_group(proc.pid)
            proc.wait()
        for r in self.readers:
            r.join(timeout=5)
        reasons = [f"ran longer than {timeout:g} s and was stopped"] if timed_out else []
        reasons += self.tree.events()
        leftover = (_kill_uid(self.uid) if self.uid is not None else _kill_group(proc.pid)) + self.tree.kill_all()
        self._release()
        if leftover:
            reasons.append(f"{leftover} process(es) still running after the sandbox ended were killed")
        if len(self.out) >= self.cap or len(self.err) >= self.cap:
            reasons.append(f"output beyond {self.cap} bytes was cut")
        return SandboxResult(proc.returncode, bytes(self.out), bytes(self.err), timed_out, "; ".join(reasons) or None)

    def discard(self) -> None:
        """Stop a sandbox that will not be used (it was started ahead for nothing)."""
        self.proc.kill()
        self.proc.wait()
        if self.uid is not None:
            _kill_uid(self.uid)
        self.tree.kill_all()
        self._release()

    def _release(self) -> None:
        self.tree.remove()
        if self.cleanup is not None:
            self.cleanup()
            self.cleanup = None


def _drain(pipe, buf: bytearray, cap: int) -> None:  # noqa: ANN001 - a binary pipe
    while chunk := pipe.read1(65536) if hasattr(pipe, "read1") else pipe.read(65536):
        if len(buf) < cap:
            buf += chunk[:cap - len(buf)]


def _feed(pipe, data: bytes) -> None:  # noqa: ANN001 - a binary pipe
    try:
        pipe.write(data)
        pipe.close()
    except OSError:
        pass


def _kill_group(pgid: int) -> int:
    """SIGKILL what is left of an unsandboxed command's process group (a new session escapes it: see README)."""
    try:
        os.killpg(pgid, 9)
        return 1
    except OSError:
        return 0


def _uid_processes(uid: int) -> set[int]:
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(ln.split(":", 1) for ln in status.read_text().splitlines() if ":" in ln)
        except (OSError, ValueError):
            continue
        if fields.get("Uid", "").split()[:1] == [str(uid)] and not fields.get("State", "").strip().startswith("Z"):
            found.add(int(status.parent.name))
    return found


def _kill_uid(uid: int, grace: float = 2.0) -> int:
    """SIGKILL every live process whose real uid is ``uid``; returns how many outlived ``grace`` seconds.

    When the sandbox's init ends, the kernel kills the rest of its PID namespace;
    that takes a moment, so only processes still there after ``grace`` count.
    """
    deadline = time.monotonic() + grace
    while _uid_processes(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return kill_until_gone(lambda: _uid_processes(uid))

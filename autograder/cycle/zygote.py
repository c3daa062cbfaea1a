"""The worker's side of a probe zygote: one sandbox per worker and assignment that serves submissions in turn.

``judge/probe_zygote.py`` runs in the sandbox; here the worker starts it,
sends it one submission's request at a time and reads that submission's
frames back: its keyed output (``O``), its stderr (``E``) and the end
(``D``: the submission child's exit status and whether the zygote proved the
sandbox clean afterwards). The time limit is the worker's, counted from the
request as for a fresh sandbox: past it, or when the zygote's channel ends
before ``D`` (a submission killed or stopped it), the whole sandbox is
discarded and that submission gets what it wrote so far. A zygote that did
not prove itself clean is discarded too; the next submission gets a fresh
one. So whatever one submission does to the zygote costs only that submission.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..sandbox.launch import start_sandboxed
from ..sandbox.limits import Limits
from ..sandbox.supervise import SandboxResult

HEAD_CAP = 64  # bytes a frame's head may take ("Z O 1048576\n")


class Zygote:
    """A started zygote sandbox for one assignment; ``run`` one request at a time while ``alive``."""

    def __init__(self, assignment: str, limits: Limits, view: Path, slot: int, output_cap: int) -> None:
        from ..judge import install_probe

        self.assignment, self.limits, self.slot, self.cap = assignment, limits, slot, output_cap
        scratch = Path(tempfile.mkdtemp(prefix="gpipe-zygote-"))
        install_probe(scratch)
        self.started = start_sandboxed([sys.executable, "probe_zygote.py"], scratch=scratch,
                                       limits=replace(limits, output_bytes_notebook=output_cap), view=view,
                                       cleanup=lambda: shutil.rmtree(scratch, ignore_errors=True), slot=slot,
                                       read_only=True, stream=True)
        self.frames: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self.ready: float | None = None  # when it said it was ready (torch, the view and the warm-up imported)
        self.served = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        """Frames from the zygote's channel into the queue; None once it ends or breaks the framing."""
        pipe = self.started.proc.stdout
        try:
            while head := pipe.readline(HEAD_CAP):
                parts = head.split()
                if len(parts) != 3 or parts[0] != b"Z" or not parts[2].isdigit():
                    break
                body = pipe.read(int(parts[2]))
                self.frames.put((parts[1].decode("ascii", "replace"), body))
        except (OSError, ValueError):
            pass
        self.frames.put(None)

    def run(self, request: dict, timeout: float) -> SandboxResult | None:
        """One submission's output as a sandbox's result; None if the zygote could not start at all (no learner
        code had run in it yet: the caller grades this submission in a sandbox of its own instead)."""
        deadline = time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        while self.ready is None:
            item = self._next(deadline)
            if item == "timeout":
                return self._timed_out(out, err, timeout)
            if item is None or item[0] != "R":
                self.discard()
                return None
            self.ready = time.time()
            if json.loads(item[1]).get("unfit"):
                self.discard()
                return None
        body = json.dumps(request).encode()
        threading.Thread(target=_send, args=(self.started.proc.stdin, b"%d\n" % len(body) + body),
                         daemon=True).start()
        self.served += 1
        while True:
            item = self._next(deadline)
            if item == "timeout":
                return self._timed_out(out, err, timeout)
            if item is None:  # the zygote is gone before it finished: this submission killed or broke it
                self.discard()
                return SandboxResult(-1, bytes(out), bytes(err), False, "the probe's sandbox ended")
            kind, data = item
            if kind in ("O", "E"):
                buf = out if kind == "O" else err
                buf += data[:max(0, self.cap - len(buf))]
            elif kind == "D":
                info = json.loads(data)
                if info.get("unclean"):
                    self.discard()
                return SandboxResult(info.get("returncode"), bytes(out), bytes(err), False, info.get("unclean"))

    @property
    def alive(self) -> bool:
        return self.started is not None and self.started.proc.poll() is None

    def _next(self, deadline: float) -> tuple[str, bytes] | str | None:
        try:
            return self.frames.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return "timeout"

    def _timed_out(self, out: bytearray, err: bytearray, timeout: float) -> SandboxResult:
        self.discard()
        return SandboxResult(-9, bytes(out), bytes(err), True, f"ran longer than {timeout:g} s and was stopped")

    def close(self) -> None:
        """End a zygote no longer needed: it exits once its request channel closes; if not soon, it is killed."""
        if self.alive:
            try:
                self.started.proc.stdin.close()
                self.started.proc.wait(timeout=5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        self.discard()

    def discard(self) -> None:
        """End the sandbox and everything in it (never reused)."""
        if self.started is not None:
            self.started.discard()
            self.started = None


def _send(pipe: Any, data: bytes) -> None:
    """The request, written from a thread (a zygote that stopped reading must not block the worker)."""
    try:
        pipe.write(data)
        pipe.flush()
    except (OSError, ValueError):
        pass

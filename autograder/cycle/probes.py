"""The sandbox side of the judge: the packages sandboxes import, built once per worker, and ``run_probe``.

Two copies of gpipe_core are mounted into sandboxes, read-only: the *grading
view* (``view_for``: gpipe_core without the bodies of what learners build) for
the probe, whose answers become scores, and the whole package
(``package_copy``) for the notebook's feedback run, which gives no score: the
learner's visible tests and demos then behave as in their own Jupyter.

``autograder.judge.grade_submission`` asks questions of the learner's
definitions through ``run_probe(module_path, request) -> response``. Here that
runs the judge's ``probe.py`` on the extracted module in a fresh sandbox whose
``PYTHONPATH`` is the assignment's grading view (gpipe_core without the bodies
of what learners build), with the request on stdin and the probe's JSON lines
read back from stdout (up to ``PROBE_BYTES``).
"""

from __future__ import annotations

import atexit
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..limits import Limits, limits_for
from ..sandbox import start_sandboxed

PROBE_BYTES = 64 << 20  # tensors come back as raw bytes: far more than a notebook's printed output
_views: dict[str, Path] = {}


def view_for(assignment: str) -> Path:
    """The grading view of gpipe_core for ``assignment`` (a folder to put on PYTHONPATH), built once per process."""
    from ..judge import build_view

    if assignment not in _views:
        root = Path(tempfile.mkdtemp(prefix=f"gpipe-view-{assignment}-"))
        atexit.register(shutil.rmtree, root, True)
        _views[assignment] = build_view(assignment, root)
    return _views[assignment]


def package_copy() -> Path:
    """A folder holding a copy of the real gpipe_core (the repository itself is never mounted), once per process."""
    import gpipe_core

    if "" not in _views:
        root = Path(tempfile.mkdtemp(prefix="gpipe-package-"))
        atexit.register(shutil.rmtree, root, True)
        shutil.copytree(Path(gpipe_core.__file__).resolve().parent, root / "gpipe_core",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _views[""] = root
    return _views[""]


def probe_runner(assignment: str, limits: Limits, isolate: bool = True, ahead: str | None = None) -> Any:
    """``run_probe`` for :func:`autograder.judge.grade_submission`, sandboxed (``isolate=False``: --no-sandbox).

    With ``ahead`` (the assignment of the worker's next submission), as a probe starts answering, the next
    submission's sandbox starts too: its harness imports torch (on the other core) and waits for its request,
    which carries the learner's module, while this probe answers and the worker judges and stores. Each
    sandbox still serves one submission; the two a worker may hold at once have uids of their own (slots),
    so ending one never touches the other.
    """
    from ..judge import read_probe_output

    def run_probe(module_path: Path, request: dict) -> dict:
        spare = _spare.pop() if _spare else None
        if spare is not None and spare[0] != assignment:
            spare[2].discard()
            spare = None
        slot, started = (spare[1], spare[2]) if spare is not None else (0, _start(assignment, limits, isolate, 0))
        if ahead and isolate:  # the next one imports torch on the other core while this one answers
            _spare.append((ahead, 1 - slot, _start(ahead, limits_for(ahead), isolate, 1 - slot)))
        fed = time.time()
        result = started.finish(json.dumps({**request, "source": Path(module_path).read_text()}).encode(),
                                limits.notebook_timeout_s)
        response = read_probe_output(result.stdout, result.returncode, result.timed_out, result.stderr,
                                     key=request.get("key"))
        ready = (response.get("header") or {}).get("ready")
        if isinstance(ready, (int, float)) and ready <= time.time():
            response["startup"] = max(0.0, ready - fed)  # what this submission waited for: torch, the view
        return response

    return run_probe


_spare: list[tuple[str, int, Any]] = []  # at most one sandbox started ahead: (assignment, its slot, Started)


def _start(assignment: str, limits: Limits, isolate: bool, slot: int) -> Any:
    """A probe sandbox, its harness importing torch and the view, waiting for its request on stdin."""
    from ..judge import install_probe

    scratch = Path(tempfile.mkdtemp(prefix="gpipe-probe-"))
    install_probe(scratch)
    return start_sandboxed([sys.executable, "probe.py"], scratch=scratch,
                           limits=replace(limits, output_bytes_notebook=PROBE_BYTES), view=view_for(assignment),
                           isolate=isolate, cleanup=lambda: shutil.rmtree(scratch, ignore_errors=True), slot=slot)


@atexit.register
def _discard_spare() -> None:
    while _spare:
        _spare.pop()[2].discard()

"""The sandbox side of the judge: the packages sandboxes import, built once per worker, and ``run_probe``.

Two copies of gpipe_core are mounted into sandboxes, read-only: the *grading
view* (``view_for``: gpipe_core without the bodies of what learners build) for
the probe, whose answers become scores, and the whole package
(``package_copy``) for the notebook's feedback run, which gives no score: the
learner's visible tests and demos then behave as in their own Jupyter.

``autograder.judge.grade_submission`` asks questions of the learner's
definitions through ``run_probe(module_path, request) -> response``. Here that
runs the judge's probe on the extracted module in a sandbox whose
``PYTHONPATH`` is the assignment's grading view (gpipe_core without the bodies
of what learners build): a child of the worker's zygote for the assignment
(``zygote.py``), or with ``--no-sandbox`` a fresh ``probe.py``, and reads the
probe's JSON lines back (up to ``PROBE_BYTES``).
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

from ..judge.facts import limits_for
from ..sandbox.launch import start_sandboxed
from ..sandbox.limits import Limits

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

    Sandboxed, each worker keeps one *zygote* (``cycle/zygote.py``) for the assignment it grades: a sandbox
    whose harness imported torch, the view and the warm-up once, and forks one child per submission, then
    kills every other process and empties every writable place before the next. A zygote that cannot prove
    that, or that a submission killed, stopped or broke, is discarded: the next submission gets a fresh one.
    With ``ahead`` (the assignment of the worker's next submission, given when a core is free), a zygote for
    it starts on the other core while this probe answers, when the next submission could not use this one
    (another assignment, or this one is discarded). The two a worker may hold have uids of their own (slots).
    ``--no-sandbox`` keeps one fresh harness per submission: without a PID namespace, a zygote's cleanup
    would reach the grader's own processes.
    """
    from ..judge import read_probe_output

    def run_probe(module_path: Path, request: dict) -> dict:
        full = {**request, "source": Path(module_path).read_text()}
        fed = time.time()
        zygote = _zygote_for(assignment, limits) if isolate and not _unfit else None
        if ahead and zygote is not None and ahead != assignment:
            _start_ahead(ahead)  # imports on the other core while this probe answers
        result = _through(zygote, limits, full) if zygote is not None else None
        if result is None:
            zygote = None
            result = _start(assignment, limits, isolate, _free_slot()).finish(json.dumps(full).encode(),
                                                                             limits.notebook_timeout_s)
        if ahead and zygote is not None and ahead == assignment and not zygote.alive:
            _start_ahead(ahead)  # this one was discarded: its replacement imports while the worker judges
        response = read_probe_output(result.stdout, result.returncode, result.timed_out, result.stderr,
                                     key=request.get("key"))
        ready = (response.get("header") or {}).get("ready")
        if zygote is not None and zygote.ready is not None:  # waited for its import only if it was not ready
            response["startup"] = max(0.0, zygote.ready - fed)
        elif isinstance(ready, (int, float)) and ready <= time.time():
            response["startup"] = max(0.0, ready - fed)  # what this submission waited for: torch, the view
        return response

    return run_probe


_held: list[Any] = []  # the worker's zygote for the assignment it grades now (at most one)
_ahead: list[Any] = []  # at most one zygote started ahead for the next submission
_unfit: list[str] = []  # set once a zygote could not start here: every probe then gets a sandbox of its own


def _zygote_for(assignment: str, limits: Limits) -> Any:
    """This worker's zygote for ``assignment``: the one held, else the one started ahead for it, else a new one."""
    from .zygote import Zygote

    if _held and (_held[0].assignment != assignment or not _held[0].alive):
        _held.pop().close()
    if not _held:
        spare = _ahead.pop() if _ahead else None
        if spare is not None and (spare.assignment != assignment or not spare.alive):
            spare.close()
            spare = None
        _held.append(spare or Zygote(assignment, limits, view_for(assignment), _free_slot(), PROBE_BYTES))
    return _held[0]


def _through(zygote: Any, limits: Limits, request: dict) -> Any:
    """The submission's result from ``zygote``, or None if it could not start (a sandbox of its own then)."""
    result = zygote.run(request, limits.notebook_timeout_s)
    if result is None:
        _unfit.append(zygote.assignment)
        while _ahead:
            _ahead.pop().close()
    return result


def _free_slot() -> int:
    """The sandbox uid slot no held zygote uses."""
    used = {z.slot for z in (*_held, *_ahead) if z.alive}
    return 0 if 0 not in used else 1


def _start_ahead(assignment: str) -> None:
    from .zygote import Zygote

    if _ahead and _ahead[0].assignment == assignment and _ahead[0].alive:
        return  # already started for it
    while _ahead:
        _ahead.pop().discard()
    _ahead.append(Zygote(assignment, limits_for(assignment), view_for(assignment), _free_slot(), PROBE_BYTES))


def _start(assignment: str, limits: Limits, isolate: bool, slot: int) -> Any:
    """A probe sandbox for one submission, its harness importing torch and the view, waiting for its request."""
    from ..judge import install_probe

    scratch = Path(tempfile.mkdtemp(prefix="gpipe-probe-"))
    install_probe(scratch)
    return start_sandboxed([sys.executable, "probe.py"], scratch=scratch,
                           limits=replace(limits, output_bytes_notebook=PROBE_BYTES), view=view_for(assignment),
                           isolate=isolate, cleanup=lambda: shutil.rmtree(scratch, ignore_errors=True), slot=slot)


@atexit.register
def _discard_zygotes() -> None:
    while _held or _ahead:
        (_held or _ahead).pop().close()

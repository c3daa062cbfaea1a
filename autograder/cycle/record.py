"""The result record: one JSON file per submission that every grade shown anywhere is a view of.

A learner, a TA or a regrade request needs one thing to point at: what each
check gave and why, which draws, on what machine, what the late policy took
and what counted. The merge writes it (``instructor/records/<assignment>/<student>.json``)
for every collected submission, graded or not, from the job's ``result.json``
(the judge's scores and messages, the seed, timings, the grading machine's
environment), the gradebook's points (0 while held) and the course file's
late policy; ``export`` (both formats), the feedback pages and ``regrade``
read it. Its schema is :data:`SCHEMA` (JSON Schema), checked on every write and
documented in autograder/README.md ("The result record").
"""

from __future__ import annotations

import functools
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from .. import REPO
from ..workspace import Workspace
from . import term as terms

VERSION = 1
NUMBER = {"type": "number"}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "gpipe course result record",
    "type": "object",
    "required": ["schema", "assignment", "student", "status", "submission", "checks", "flags", "holds",
                 "problems", "raw", "late", "final", "max", "seed", "seconds", "timings", "environment"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": VERSION},
        "assignment": {"type": "string"}, "student": {"type": "string"},
        "status": {"enum": ["graded", "held", "missing", "invalid", "grader_error"]},
        "submission": {"type": "object", "required": ["time", "time_from", "lms"], "additionalProperties": False,
                       "properties": {"time": {"type": ["string", "null"]}, "time_from": {"type": ["string", "null"]},
                                      "lms": {"type": ["object", "null"]}}},
        "checks": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["points", "max", "judged", "messages"], "additionalProperties": False,
            "properties": {"points": NUMBER, "max": NUMBER, "judged": {"type": ["number", "null"]},
                           "messages": {"type": "array", "items": {"type": "string"}}}}},
        "flags": {"type": "array", "items": {"type": "string"}},
        "holds": {"type": "array", "items": {"type": "string"}},
        "problems": {"type": "array", "items": {"type": "array", "items": {"type": "string"},
                                                "minItems": 2, "maxItems": 2}},
        "raw": NUMBER, "final": NUMBER, "max": NUMBER,
        "late": {"type": "object", "required": ["due", "hours_late", "policy", "penalty", "past_cutoff", "reason"],
                 "additionalProperties": False,
                 "properties": {"due": {"type": ["string", "null"]}, "hours_late": NUMBER,
                                "policy": {"type": "string"}, "penalty": NUMBER,
                                "past_cutoff": {"type": "boolean"}, "reason": {"type": "string"}}},
        "seed": {"type": ["integer", "null"]},
        "seconds": {"type": ["number", "null"]},
        "timings": {"type": "object", "additionalProperties": NUMBER},
        "environment": {"type": ["object", "null"], "additionalProperties": {"type": "string"},
                        "required": ["python", "torch", "device", "package"]},
    },
}


@functools.cache
def environment() -> dict[str, str]:
    """Where a job graded: Python, torch, the device the judge computed on, the course package's version."""
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "device": f"cpu ({platform.machine()}; GPUs hidden from grading)",
            "package": f"gpipe_core {_version()}" + (f" (commit {commit})" if commit else ""),
            "platform": platform.platform()}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gpipe_core")
    except PackageNotFoundError:
        return "unknown"


def path(assignment: str, student: str) -> Path:
    return Workspace.from_env().record(assignment, student)


def read(assignment: str, student: str) -> dict[str, Any] | None:
    try:
        return json.loads(path(assignment, student).read_text())
    except (OSError, ValueError):
        return None


def every() -> dict[tuple[str, str], dict[str, Any]]:
    """Every record there is, by (assignment, student)."""
    root = Workspace.from_env().records
    found = {}
    for file in sorted(root.glob("*/*.json")) if root.is_dir() else []:
        found[(file.parent.name, file.stem)] = json.loads(file.read_text())
    return found


def validate(record: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``record`` follows :data:`SCHEMA`."""
    import jsonschema

    jsonschema.validate(record, SCHEMA)


def build(assignment: str, student: str, stored: dict[str, Any] | None, problems: list[tuple[str, str]],
          cells: dict[str, tuple[float, float]], late: terms.Late, policy: str) -> dict[str, Any]:
    """The record of one submission (see :data:`SCHEMA`); ``cells``: the gradebook's (points, max) per check."""
    codes = {code for code, _ in problems}
    status = ("missing" if "MISSING_NOTEBOOK" in codes else "invalid" if "INVALID_NOTEBOOK" in codes
              else "grader_error" if "GRADER_ERROR" in codes or stored is None
              else "held" if stored.get("held") else "graded")
    stored = stored or {}
    judged, messages = stored.get("judged") or {}, stored.get("messages") or {}
    meta = _handin(assignment, student)
    return {
        "schema": VERSION, "assignment": assignment, "student": student, "status": status,
        "submission": {"time": meta.get("time"), "time_from": meta.get("time_from"), "lms": meta.get("lms")},
        "checks": {gid: {"points": float(points), "max": float(top),
                         "judged": float(judged[gid]) if gid in judged else None,
                         "messages": [str(m) for m in messages.get(gid, [])]} for gid, (points, top) in cells.items()},
        "flags": [d for c, d in problems if c == "FLAGGED"],
        "holds": [d for c, d in problems if c == "HELD"],
        "problems": [[str(c), str(d)] for c, d in problems],
        "raw": float(late.raw), "final": float(late.final), "max": float(sum(t for _, t in cells.values())),
        "late": {"due": terms.iso(late.due) if late.due else None, "hours_late": float(late.hours_late),
                 "policy": policy, "penalty": float(late.penalty), "past_cutoff": late.past_cutoff,
                 "reason": late.reason},
        "seed": stored.get("seed"), "seconds": stored.get("seconds"), "timings": stored.get("timings") or {},
        "environment": stored.get("environment"),
    }


def _handin(assignment: str, student: str) -> dict[str, Any]:
    """When the counted hand-in came and where that time is from (``handins.py``), else the collect stamp."""
    from .handins import meta_of

    stamp = Workspace.from_env().submission(student, assignment) / "timestamp.txt"
    if not stamp.exists():
        return {}
    time = stamp.read_text().strip()
    return meta_of(student, assignment, time) or {"time": time, "time_from": "collect", "lms": None}


def write(record: dict[str, Any]) -> Path:
    """Validate and store one record; the same record written again leaves the file as it was."""
    validate(record)
    target = path(record["assignment"], record["student"])
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=1, sort_keys=True)
    if not target.exists() or target.read_text() != text:
        partial = target.with_suffix(".json.part")
        partial.write_text(text)
        partial.replace(target)
    return target


def finish(course: Any, result: Any, stored: dict[str, Any] | None, term: terms.Term | None) -> dict[str, Any]:
    """The merge's last step for one submission: the late policy into the gradebook and the log line, then
    the record. ``result`` (a :class:`~autograder.cycle.result.Result`) holds the raw score on entry and the
    final one on return."""
    assignment, student = result.assignment, result.student
    stamp = Workspace.from_env().submission(student, assignment) / "timestamp.txt"
    when = terms.parse_stamp(stamp.read_text()) if stamp.exists() and stored is not None else None
    late = (term.apply(student, assignment, result.score, result.max_score, when) if term
            else terms.Late(result.score, 0.0, result.score, None, 0.0, False, ""))
    with course.gradebook() as gb:
        submission = gb.find_submission(assignment, student)
        for k, nb in enumerate(sorted(submission.notebooks, key=lambda n: n.name)):
            nb.late_submission_penalty = late.penalty if k == 0 else 0.0
        gb.db.commit()
        cells = {g.name: (float(g.score), float(g.max_score)) for nb in submission.notebooks for g in nb.grades}
    if late.reason:
        result.problems.insert(0, ("LATE", late.reason))
    result.score = late.final
    policy = term.policy(assignment).describe() if term else "no course file: nothing is late"
    record = build(assignment, student, stored, result.problems, cells, late, policy)
    write(record)
    return record

"""The course file: one term's due dates, extensions, late policy and roster, validated with its line numbers.

A real class hands work in late, gets extensions and resubmits; the grade an
instructor publishes is the judge's score less a late penalty fixed in advance.
All of that lives in one TOML file (``instructor/course.toml``, or
``GPIPE_COURSE_FILE``), read here and nowhere else, so the merge, the export,
the feedback and a regrade apply the same rules. The file's reference is
``autograder/README.md`` ("The course file"); ``autograder/course.example.toml``
is a complete example. Without a course file nothing is late: every hand-in
counts in full, as before.

The policy follows what LMSs offer (Canvas's late policy API: a percentage of
the points possible per late hour or day, with a limit; nbgrader's
``LateSubmissionPlugin``: none or zero): ``none``, ``per_hour`` or ``per_day``
(``percent`` of the assignment's points per *started* hour or day, at most
``cap`` percent in all), and, with any of them, ``cutoff_hours``: a hand-in
later than that after the (extended) due date scores 0. A penalty never makes
a score negative.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import assignments
from ..workspace import Workspace
from .course import STUDENT_ID

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package (pip install tomli)
    import tomli as tomllib  # type: ignore[no-redef]

COURSE_FILE_ENV = "GPIPE_COURSE_FILE"
POLICIES = ("none", "per_hour", "per_day")
UNIT_SECONDS = {"per_hour": 3600, "per_day": 86400}
TOP_KEYS = {"late", "assignments", "extensions", "roster"}
LATE_KEYS = {"policy", "percent", "cap", "cutoff_hours"}
ASSIGNMENT_KEYS = {"due", "late", "canvas"}


class TermError(SystemExit):
    """A course file that cannot be used; the message names the file, the line and the fix."""


def course_file() -> Path:
    """Where the course file is: ``GPIPE_COURSE_FILE``, else ``instructor/course.toml``."""
    return Path(os.environ.get(COURSE_FILE_ENV, Workspace.from_env().course_file))


@dataclass(frozen=True)
class LatePolicy:
    policy: str = "none"
    percent: float = 0.0  # of the assignment's points, per started hour or day late
    cap: float = 100.0  # percent of the points at most, in all
    cutoff_hours: float | None = None  # later than this after the due date: 0

    def describe(self) -> str:
        text = "no late penalty" if self.policy == "none" else (
            f"{self.percent:g}% per started {'hour' if self.policy == 'per_hour' else 'day'}, at most {self.cap:g}%")
        return text + (f"; 0 after {self.cutoff_hours:g} h" if self.cutoff_hours is not None else "")


@dataclass(frozen=True)
class Late:
    """What the late policy did to one submission's score."""

    raw: float
    penalty: float
    final: float
    due: dt.datetime | None
    hours_late: float
    past_cutoff: bool
    reason: str  # "" when on time


@dataclass(frozen=True)
class Term:
    due: dict[str, dt.datetime] = field(default_factory=dict)
    late: dict[str, LatePolicy] = field(default_factory=dict)  # assignment -> its policy ("" : the default)
    extensions: dict[tuple[str, str], dt.datetime] = field(default_factory=dict)  # (student, assignment) -> due
    canvas: dict[str, str] = field(default_factory=dict)  # assignment -> its Canvas gradebook column
    roster: Path | None = None
    path: Path | None = None

    def policy(self, assignment: str) -> LatePolicy:
        return self.late.get(assignment, self.late.get("", LatePolicy()))

    def due_for(self, student: str, assignment: str) -> dt.datetime | None:
        return self.extensions.get((student, assignment), self.due.get(assignment))

    def cutoff_for(self, student: str, assignment: str) -> dt.datetime | None:
        due, rule = self.due_for(student, assignment), self.policy(assignment)
        return None if due is None or rule.cutoff_hours is None else due + dt.timedelta(hours=rule.cutoff_hours)

    def apply(self, student: str, assignment: str, raw: float, top: float, when: dt.datetime | None) -> Late:
        """The penalty for a hand-in at ``when`` worth ``raw`` of ``top`` points."""
        due = self.due_for(student, assignment)
        if due is None or when is None or when <= due:
            return Late(raw, 0.0, raw, due, 0.0, False, "")
        rule, seconds = self.policy(assignment), (when - due).total_seconds()
        hours = round(seconds / 3600, 2)
        cutoff = self.cutoff_for(student, assignment)
        if cutoff is not None and when > cutoff:
            return Late(raw, raw, 0.0, due, hours, True, f"{hours:g} h late, past the cut-off "
                        f"({rule.cutoff_hours:g} h after the due date {iso(due)}): scored 0")
        if rule.policy == "none":
            return Late(raw, 0.0, raw, due, hours, False, f"{hours:g} h late (no late penalty)")
        units = math.ceil(seconds / UNIT_SECONDS[rule.policy])
        penalty = round(min(raw, top * min(rule.percent * units, rule.cap) / 100), 4)
        return Late(raw, penalty, round(raw - penalty, 4), due, hours, False,
                    f"{hours:g} h late ({units} {'hour' if rule.policy == 'per_hour' else 'day'}(s) at "
                    f"{rule.percent:g}%, at most {rule.cap:g}%): raw {raw:g}, penalty {penalty:g}")


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> dt.datetime:
    """A collect stamp (``2026-12-01 10:00:00.000000 UTC``, as nbgrader writes it) or an ISO time with an offset."""
    text = text.strip()
    when = dt.datetime.fromisoformat(text.removesuffix(" UTC").replace("Z", "+00:00"))
    if when.tzinfo is None:
        if not text.endswith("UTC"):
            raise ValueError(f"{text!r} has no time zone: add Z or an offset such as +01:00")
        when = when.replace(tzinfo=dt.timezone.utc)
    return when


def load(path: Path | None = None) -> Term | None:
    """The course file at ``path`` (default :func:`course_file`), validated; None where there is none."""
    path = Path(path) if path is not None else course_file()
    if not path.exists():
        return None
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TermError(f"{path}: {exc} (the file must be TOML: see autograder/README.md, 'The course file')") from None
    return _build(data, text, path)


def _build(data: dict[str, Any], text: str, path: Path) -> Term:
    def fail(section: str, key: str, message: str) -> TermError:
        return TermError(f"{path}:{line_of(text, section, key)}: [{section}] {key}: {message}" if section else
                         f"{path}:{line_of(text, section, key)}: {key}: {message}")

    known = assignments()
    for key in data:
        if key not in TOP_KEYS:
            raise fail("", key, f"unknown key (expected one of {sorted(TOP_KEYS)})")
    late = {"": _policy(data.get("late", {}), "late", fail)}
    due, canvas = {}, {}
    for a, spec in data.get("assignments", {}).items():
        section = f"assignments.{a}"
        if a not in known:
            raise fail("assignments", a, f"no such assignment (solutions/ holds {known})")
        if not isinstance(spec, dict):
            raise fail("assignments", a, "must be a table with at least due = <date and time>")
        for key in spec:
            if key not in ASSIGNMENT_KEYS:
                raise fail(section, key, f"unknown key (expected {sorted(ASSIGNMENT_KEYS)})")
        if "due" not in spec:
            raise fail(section, "due", "missing: give the due date, e.g. due = 2027-01-15T23:59:00Z")
        due[a] = _when(spec["due"], section, "due", fail)
        if "late" in spec:
            late[a] = _policy(spec["late"], f"{section}.late", fail)
        if "canvas" in spec:
            if not isinstance(spec["canvas"], str) or not spec["canvas"].strip():
                raise fail(section, "canvas", "must be the Canvas column's name, e.g. \"01 Micro-batching (1001)\"")
            canvas[a] = spec["canvas"]
    extensions = {}
    for student, given in data.get("extensions", {}).items():
        section = f"extensions.{student}"
        if not STUDENT_ID.match(student):
            raise fail("extensions", student, "not a student id (letters, digits and . _ @ - only)")
        if not isinstance(given, dict):
            raise fail("extensions", student, "must be a table: <assignment> = <new due date> or <hours added>")
        for a, value in given.items():
            if a not in due:
                raise fail(section, a, "no due date for this assignment in [assignments]: nothing to extend")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if value <= 0:
                    raise fail(section, a, "hours added must be more than 0")
                extensions[(student, a)] = due[a] + dt.timedelta(hours=value)
            else:
                extensions[(student, a)] = _when(value, section, a, fail)
    roster = None
    if "roster" in data:
        if not isinstance(data["roster"], str):
            raise fail("", "roster", "must be the path of the roster CSV (relative to this file)")
        roster = (path.parent / data["roster"]).resolve()
        if not roster.exists():
            raise fail("", "roster", f"{roster} does not exist")
    return Term(due, late, extensions, canvas, roster, path)


def _when(value: Any, section: str, key: str, fail: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise fail(section, key, "a date and time without a time zone: add Z (UTC) or an offset, "
                       "e.g. 2027-01-15T23:59:00Z or 2027-01-15T23:59:00+01:00")
        return value
    raise fail(section, key, f"{value!r} is not a date and time: write it bare, e.g. 2027-01-15T23:59:00Z")


def _policy(spec: Any, section: str, fail: Any) -> LatePolicy:
    where = section
    if not isinstance(spec, dict):
        parent, _, last = section.rpartition(".")
        raise fail(parent, last, "must be a table: { policy = \"per_day\", percent = 10, cap = 30 }")
    for k in spec:
        if k not in LATE_KEYS:
            raise fail(where, k, f"unknown key of a late policy (expected {sorted(LATE_KEYS)})")
    policy = spec.get("policy", "none")
    if policy not in POLICIES:
        raise fail(where, "policy", f"{policy!r} is not a policy: use one of {list(POLICIES)}")
    numbers = {}
    for k, low, high in (("percent", 0, 100), ("cap", 0, 100), ("cutoff_hours", 0, None)):
        if k in spec:
            v = spec[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < low or (high is not None and v > high):
                raise fail(where, k, f"{v!r}: must be a number from {low}" + (f" to {high}" if high else " up"))
            numbers[k] = float(v)
    if policy != "none" and "percent" not in numbers:
        raise fail(where, "percent", f"missing: {policy} needs the percent of the points taken per unit late")
    return LatePolicy(policy, numbers.get("percent", 0.0), numbers.get("cap", 100.0), numbers.get("cutoff_hours"))


def line_of(text: str, section: str, key: str) -> int:
    """The line of ``key`` in table ``section`` (``a.b``), else of the table's header, else 1.

    A table written inline under its parent (``late = { policy = ... }`` in ``[assignments.a]``) is found by
    the parent's line that names it.
    """
    header = re.compile(r"^\s*\[\s*(.+?)\s*\]\s*(#.*)?$")
    parent, _, last = section.rpartition(".")
    current, fallback = "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        found = header.match(line)
        if found:
            current = ".".join(part.strip().strip("\"'") for part in found.group(1).split("."))
            if current == (f"{section}.{key}" if section else key):
                return number  # the key is a table of its own: [assignments.01_x]
            fallback = number if current == section and not fallback else fallback
            continue
        if current == section and re.match(rf'^\s*["\']?{re.escape(key)}["\']?\s*=', line):
            return number
        if section and current == parent and re.match(rf'^\s*["\']?{re.escape(last)}["\']?\s*=', line):
            fallback = fallback or number
            if re.search(rf"\b{re.escape(key)}\b", line.split("=", 1)[1]):
                return number
    return fallback or 1


def report(path: Path | None = None) -> int:
    """``python -m autograder course-check``: validate the course file and print what it says."""
    from .lms import read_roster

    found = load(path)
    if found is None:
        raise TermError(f"no course file at {path or course_file()} (nothing is late without one): "
                        "start from autograder/course.example.toml")
    for a, due in sorted(found.due.items()):
        print(f"{a}: due {iso(due)}; {found.policy(a).describe()}"
              + (f"; Canvas column {found.canvas[a]!r}" if a in found.canvas else ""))
    for (s, a), due in sorted(found.extensions.items()):
        print(f"extension: {s} on {a} until {iso(due)}")
    if found.roster:
        print(f"roster: {len(read_roster(found.roster))} students in {found.roster}")
    print(f"{found.path}: ok")
    return 0

"""Canvas in and out: the roster, the "download submissions" zip, and the gradebook import CSV.

A Canvas zip names each file ``<name>_<user id>_<file id>_<original name>``
(``doejane_12345_67890_partitioner.ipynb``), with ``late`` after the name for a
hand-in Canvas counted late (``doejane_late_12345_67890_partitioner.ipynb``),
and a ``-1``, ``-2`` ... before the extension when the learner's upload had a
name already used. The name part is Canvas's, lower case and not unique; the
user id is what a file is matched by, through the roster, which maps Canvas
user ids to the course's student ids. A user id that is not in the roster, or
two files of one learner for the same notebook, are reported and not
collected: nothing is guessed. The zip says whether a hand-in was late but not
when it came: ``--times`` gives Canvas's ``submitted_at`` per user id; without
it, see :func:`autograder.cycle.collect.collect` for the time used.

The export is the CSV Canvas's gradebook imports: the columns ``Student``,
``ID``, ``SIS User ID``, ``SIS Login ID``, ``Section``, then one column per
assignment, and a ``Points Possible`` row under the header (the layout of
Canvas's own gradebook export, which its import reads back).
"""

from __future__ import annotations

import csv
import re
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .course import IGNORED_NAMES, STUDENT_ID

ROSTER_COLUMNS = ("student_id", "canvas_id", "name", "sis_user_id", "sis_login_id", "section")
CANVAS_NAME = re.compile(r"^(?P<name>[^_]+)_(?:(?P<late>late|LATE)_)?(?P<user>\d+)_(?P<file>\d+)_(?P<original>.+)$")
CANVAS_COPY = re.compile(r"^(?P<stem>.+?)-\d+(?P<ext>\.[A-Za-z0-9]+)$")  # partitioner-1.ipynb: a re-upload
CANVAS_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]


class RosterError(SystemExit):
    """A roster that cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Person:
    student: str
    canvas_id: str
    name: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""
    section: str = ""


def read_roster(path: Path) -> dict[str, Person]:
    """The roster CSV (columns ``ROSTER_COLUMNS``; ``student_id`` and ``canvas_id`` required) by Canvas user id."""
    path = Path(path)
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("student_id", "canvas_id") if c not in (reader.fieldnames or [])]
        if missing:
            raise RosterError(f"{path}:1: the header lacks {missing} (columns: {', '.join(ROSTER_COLUMNS)})")
        people: dict[str, Person] = {}
        students: dict[str, int] = {}
        for number, row in enumerate(reader, start=2):
            cells = {c: (row.get(c) or "").strip() for c in ROSTER_COLUMNS}
            person = Person(cells.pop("student_id"), **cells)
            if not STUDENT_ID.match(person.student):
                raise RosterError(f"{path}:{number}: student_id {person.student!r} is not a student id "
                                  "(letters, digits and . _ @ - only)")
            if not person.canvas_id.isdigit():
                raise RosterError(f"{path}:{number}: canvas_id {person.canvas_id!r} is not a Canvas user id "
                                  "(the number in the ID column of Canvas's gradebook export)")
            if person.canvas_id in people:
                raise RosterError(f"{path}:{number}: canvas_id {person.canvas_id} is listed twice "
                                  f"({people[person.canvas_id].student} and {person.student}): keep one row")
            if person.student in students:
                raise RosterError(f"{path}:{number}: student_id {person.student} is listed twice "
                                  f"(also line {students[person.student]}): one Canvas user per student")
            people[person.canvas_id], students[person.student] = person, number
    return people


@dataclass
class HandIn:
    """One learner's files for one assignment, out of a Canvas zip."""

    student: str
    assignment: str
    canvas_id: str
    late_marked: bool
    files: dict[str, bytes] = field(default_factory=dict)  # name as the learner uploaded it -> bytes
    notes: list[tuple[str, str]] = field(default_factory=list)


def read_canvas_zip(path: Path, roster: dict[str, Person], owner: dict[str, str], assignment: str | None,
                    max_bytes: int) -> tuple[list[HandIn], list[str]]:
    """The hand-ins in a Canvas submissions zip, and a line for each file that was not taken (and why).

    ``owner`` maps a notebook's file name to its assignment; ``assignment`` claims every notebook of the zip.
    Files are read from the archive, never extracted by their own names; links and files over ``max_bytes``
    are refused.
    """
    found: dict[tuple[str, str], HandIn] = {}
    refused: list[str] = []
    duplicates: set[tuple[str, str]] = set()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            base = info.filename.rstrip("/").rsplit("/", 1)[-1]
            if info.is_dir() or base in IGNORED_NAMES or base.startswith("."):
                continue
            parsed = CANVAS_NAME.match(base)
            if parsed is None:
                refused.append(f"{info.filename}: not a Canvas submission name (<name>_<user id>_<file id>_<file>)")
                continue
            person = roster.get(parsed["user"])
            if person is None:
                refused.append(f"{info.filename}: Canvas user {parsed['user']} ({parsed['name']}) is not in the "
                               "roster: add a row for them and collect again")
                continue
            original = parsed["original"]
            copy = CANVAS_COPY.match(original)
            plain = f"{copy['stem']}{copy['ext']}" if copy else original
            a = owner.get(original) or owner.get(plain) or (assignment if original.endswith(".ipynb") else None)
            if a is None:
                refused.append(f"{info.filename}: not a notebook of this course (ignored)")
                continue
            entry = found.setdefault((person.student, a), HandIn(person.student, a, person.canvas_id,
                                                                 bool(parsed["late"])))
            expected = _normal(person.name)
            if expected and parsed["name"].lower() != expected and not any(c == "NAME_MISMATCH" for c, _ in
                                                                          entry.notes):
                entry.notes.append(("NAME_MISMATCH", f"the zip names Canvas user {person.canvas_id} "
                                    f"{parsed['name']!r}, the roster {person.name!r} (matched by the user id)"))
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode) or info.file_size > max_bytes:
                why = "a symbolic link" if stat.S_ISLNK(mode) else f"{info.file_size} bytes, over {max_bytes}"
                entry.notes.append(("NOT_COLLECTED", f"{original}: {why}"))
                continue
            with archive.open(info) as fh:
                data = fh.read(max_bytes + 1)
            if len(data) > max_bytes:
                entry.notes.append(("NOT_COLLECTED", f"{original}: over {max_bytes} bytes"))
                continue
            name = original if original in owner else plain if plain in owner else original
            if name in entry.files:
                duplicates.add((person.student, a))
            entry.files[name] = data
            if name != original:
                entry.notes.append(("RENAMED", f"{original} -> {name} (Canvas's name for a re-upload)"))
    for key in sorted(duplicates):
        refused.append(f"{key[0]} on {key[1]}: two files in the zip for the same notebook; not collected "
                       "(remove the wrong one from the zip, or collect the right one from a folder)")
        del found[key]
    return [found[k] for k in sorted(found)], refused


def _normal(name: str) -> str:
    """Canvas's zip form of a name: "Doe, Jane" -> "doejane"."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def read_times(path: Path, roster: dict[str, Person]) -> dict[str, str]:
    """``canvas_id,submitted_at`` rows (Canvas's Submissions API ``user_id`` and ``submitted_at``) by student id."""
    from .term import parse_stamp

    times = {}
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"canvas_id", "submitted_at"} <= set(reader.fieldnames or []):
            raise RosterError(f"{path}:1: the header must have canvas_id and submitted_at")
        for number, row in enumerate(reader, start=2):
            person = roster.get((row["canvas_id"] or "").strip())
            if person is None:
                raise RosterError(f"{path}:{number}: Canvas user {row['canvas_id']!r} is not in the roster")
            try:
                when = parse_stamp(row["submitted_at"])
            except ValueError as exc:
                raise RosterError(f"{path}:{number}: submitted_at {row['submitted_at']!r}: {exc}") from None
            times[person.student] = when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    return times


def write_canvas(path: Path, people: Iterable[Person], columns: dict[str, str], tops: dict[str, float],
                 finals: dict[tuple[str, str], float]) -> int:
    """Canvas's gradebook import CSV: one row per person, one column per assignment (``columns``: its name)."""
    names = list(columns)
    rows = [CANVAS_HEADER + [columns[a] for a in names],
            ["Points Possible", "", "", "", ""] + [f"{tops[a]:g}" for a in names]]
    for p in sorted(people, key=lambda p: (p.name or p.student).lower()):
        rows.append([p.name or p.student, p.canvas_id, p.sis_user_id, p.sis_login_id, p.section]
                    + [f"{finals[(p.student, a)]:g}" if (p.student, a) in finals else "" for a in names])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return len(rows) - 2

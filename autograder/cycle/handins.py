"""Resubmissions: every hand-in is kept, and the latest one before the cut-off is the one graded.

Learners resubmit. Each collect that finds new notebook bytes for a student
and assignment keeps them as a new *hand-in*
(``instructor/handins/<student>/<assignment>/<n>/``: the notebooks and
``handin.json``, saying when it came and where that time is from); bytes
equal to the latest hand-in's are the same hand-in, so collecting again
changes nothing. The hand-in that counts is the latest one handed in no later
than the student's cut-off (the course file's ``cutoff_hours`` after their
due date, extension included), or the latest of all where there is no
cut-off or none came before it; it is copied to ``submitted/``, which is what
grading reads. A hand-in after the cut-off is kept, listed, and not graded
while an earlier one exists.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from ..workspace import Workspace
from .term import Term, parse_stamp

HANDIN = "handin.json"


def folder(student: str, assignment: str) -> Path:
    return Workspace.from_env().handin(student, assignment)


def hand_ins(student: str, assignment: str) -> list[tuple[Path, dict[str, Any]]]:
    """Every kept hand-in, oldest first, with its ``handin.json``."""
    root = folder(student, assignment)
    found = []
    for path in sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)) \
            if root.is_dir() else []:
        found.append((path, json.loads((path / HANDIN).read_text())))
    return found


def keep(student: str, assignment: str, contents: dict[str, bytes], stamp: str, time_from: str,
         lms: dict[str, Any] | None = None) -> bool:
    """Keep ``contents`` as a new hand-in unless they equal the latest one's; True when one was added."""
    kept = hand_ins(student, assignment)
    if kept:
        last, _ = kept[-1]
        if {p.name: p.read_bytes() for p in last.glob("*.ipynb")} == contents:
            return False
    path = folder(student, assignment) / str(len(kept) + 1)
    path.mkdir(parents=True)
    for name, data in contents.items():
        (path / name).write_bytes(data)
    (path / HANDIN).write_text(json.dumps({"time": stamp, "time_from": time_from, "lms": lms}, indent=1))
    return True


def counted(student: str, assignment: str, term: Term | None) -> tuple[Path, dict[str, Any], list[str]] | None:
    """The hand-in that counts and what to say about the others (None where there is none)."""
    kept = hand_ins(student, assignment)
    if not kept:
        return None
    cutoff = term.cutoff_for(student, assignment) if term else None
    kept.sort(key=lambda item: parse_stamp(item[1]["time"]))  # by time: an LMS time may come out of order
    before = [(p, m) for p, m in kept if cutoff is None or parse_stamp(m["time"]) <= cutoff]
    path, meta = (before or kept)[-1]
    notes = []
    if len(kept) > 1:
        notes.append(f"hand-in {path.name} of {len(kept)} counts ({meta['time']}); every one is kept in "
                     f"handins/{student}/{assignment}/")
    after = [p.name for p, m in kept if cutoff is not None and parse_stamp(m["time"]) > cutoff]
    if after and before:
        notes.append(f"hand-in(s) {', '.join(after)} came after the cut-off {cutoff:%Y-%m-%d %H:%M} UTC "
                     "and are not graded")
    return path, meta, notes


def publish(student: str, assignment: str, term: Term | None, dest: Path) -> list[tuple[str, str]]:
    """Make ``dest`` (``submitted/<student>/<assignment>``) the counted hand-in; notes for the log line."""
    chosen = counted(student, assignment, term)
    if chosen is None:
        return []
    path, meta, notes = chosen
    wanted = {p.name: p.read_bytes() for p in path.glob("*.ipynb")}
    same = dest.is_dir() and (dest / "timestamp.txt").exists() and \
        (dest / "timestamp.txt").read_text().strip() == meta["time"] and \
        {p.name: p.read_bytes() for p in dest.glob("*.ipynb")} == wanted
    if not same:
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for name, data in wanted.items():
            (dest / name).write_bytes(data)
        (dest / "timestamp.txt").write_text(meta["time"])
    return [("RESUBMITTED", n) for n in notes]


def meta_of(student: str, assignment: str, stamp: str) -> dict[str, Any] | None:
    """The ``handin.json`` of the hand-in with this time (the one ``submitted/`` holds), if any."""
    return next((m for _, m in hand_ins(student, assignment) if m["time"] == stamp), None)


def now(at: str | None = None) -> str:
    """The collect's clock as a stamp (``at``: an ISO time with a zone, to collect as of a known time)."""
    when = parse_stamp(at) if at else dt.datetime.now(dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")

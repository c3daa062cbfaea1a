"""collect: copy only an assignment's notebooks from a plain folder or a Canvas zip of submissions.

The folder (or zip) is the learners': everything in it is untrusted. Only
regular files are read (a symlink is skipped and noted, never followed: it
could point at ``solutions/`` or any file of the grader's), each at most
``MAX_BYTES``. Every new set of notebook bytes is kept as a hand-in and the
one that counts is published to ``submitted/`` (``handins.py``: the latest
before the cut-off). Its time is the instructor's: the time this collect first
saw these bytes (a learner's own ``timestamp.txt`` is ignored), or, from a
Canvas zip, Canvas's submission time where ``--times`` gives it (``lms.py``;
without it: the due date for a hand-in Canvas did not mark late, if the
collect came after it, and the collect's time for one it marked late).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

from .. import assignments, notebook_names
from ..workspace import Workspace
from . import handins, lms
from . import term as terms
from .course import IGNORED_NAMES, STUDENT_ID

MAX_BYTES = 20 << 20  # a notebook of this course is well under 1 MB; larger ones are not collected


def _notes_path() -> Path:
    return Workspace.from_env().collect_notes


def load_notes() -> dict[str, list[list[str]]]:
    path = _notes_path()
    return json.loads(path.read_text()) if path.exists() else {}


def collect(folder: Path, assignment: str | None = None, roster: Path | None = None, times: Path | None = None,
            at: str | None = None) -> list[str]:
    """Collect submissions from ``folder`` (or a Canvas zip) into ``instructor/submitted/`` (README.md: layouts).

    Accepted: ``folder/<student>/<assignment>/<notebook>.ipynb``, the flat
    ``folder/<student>/<notebook>.ipynb`` (the notebook's name tells the
    assignment, or ``assignment`` says it) and Canvas's submissions zip with
    a ``roster`` (else the course file's). New bytes are a new hand-in stamped
    with the instructor's clock (``at``: collect as of that ISO time), so
    collecting the same files again changes nothing.
    """
    folder = Path(folder)
    known = assignments()
    if assignment is not None and assignment not in known:
        raise SystemExit(f"unknown assignment {assignment!r}: solutions/ holds {known}")
    owner = {f"{nb}.ipynb": a for a in known for nb in notebook_names(a)}
    term, clock = terms.load(), handins.now(at)
    notes = load_notes()
    if folder.is_file() and zipfile.is_zipfile(folder):
        lines = _canvas(folder, assignment, owner, roster or (term.roster if term else None), times, term, clock,
                        notes)
        return _finish(notes, lines)
    if not folder.is_dir():
        raise SystemExit(f"collect: {folder} is neither a folder (FOLDER/<student>/<assignment>/<nb>.ipynb) "
                         "nor a Canvas submissions zip")
    lines = []
    for student_dir in sorted(p for p in folder.iterdir()
                              if p.is_dir() and not p.is_symlink() and p.name not in IGNORED_NAMES):
        student = student_dir.name
        if not STUDENT_ID.match(student):
            lines.append(f"skipped folder {student!r}: not usable as a student id "
                         "(letters, digits and . _ @ - only); rename it")
            continue
        found: dict[str, list[Path]] = {}  # assignment -> candidate files
        loose: list[Path] = []
        for entry in sorted(student_dir.iterdir()):
            if entry.name in IGNORED_NAMES or entry.name.startswith("."):
                continue
            if entry.is_symlink():
                loose.append(entry)
            elif entry.is_dir() and entry.name in known:
                found.setdefault(entry.name, []).extend(_files(entry))
            elif entry.is_file() and assignment is not None:
                found.setdefault(assignment, []).append(entry)
            elif entry.is_file() and entry.name in owner:
                found.setdefault(owner[entry.name], []).append(entry)
            else:
                loose.extend(_files(entry) if entry.is_dir() else [entry])
        if not found:
            lines.append(f"skipped {student}: no assignment folder or notebook of this course inside "
                         f"(expected {student}/<assignment>/<notebook>.ipynb, assignments {known})")
            continue
        for a, files in sorted(found.items()):
            contents, found_notes = _select(a, files, loose if len(found) == 1 else [])
            lines.append(_hand_in(student, a, contents, found_notes, clock, "collect", None, term, notes))
    return _finish(notes, lines)


def _finish(notes: dict[str, list[list[str]]], lines: list[str]) -> list[str]:
    _notes_path().parent.mkdir(parents=True, exist_ok=True)
    _notes_path().write_text(json.dumps(notes, indent=1, sort_keys=True))
    for line in lines:
        print(line)
    return lines


def _canvas(path: Path, assignment: str | None, owner: dict[str, str], roster: Path | None, times: Path | None,
            term: terms.Term | None, clock: str, notes: dict[str, list[list[str]]]) -> list[str]:
    """The hand-ins of a Canvas zip (``lms.read_canvas_zip``), each with the time the late policy uses."""
    if roster is None:
        raise SystemExit(f"collect {path}: a Canvas zip needs a roster mapping Canvas user ids to student ids: "
                         "--roster roster.csv, or roster = \"roster.csv\" in the course file (autograder/README.md)")
    people = lms.read_roster(roster)
    when = lms.read_times(times, people) if times else {}
    found, refused = lms.read_canvas_zip(path, people, owner, assignment, MAX_BYTES)
    lines = [f"not collected: {why}" for why in refused]
    for h in found:
        wanted = {f"{nb}.ipynb" for nb in notebook_names(h.assignment)}
        spare = [n for n in h.files if n not in wanted and n.endswith(".ipynb")]
        contents = {n: d for n, d in h.files.items() if n in wanted}
        found_notes = list(h.notes)
        if len(wanted) == 1 and not contents and len(spare) == 1:
            contents = {next(iter(wanted)): h.files[spare[0]]}
            found_notes.append(("RENAMED", f"{spare[0]} -> {next(iter(wanted))}"))
        due = term.due_for(h.student, h.assignment) if term else None
        if h.student in when:
            stamp, source = when[h.student], "lms"
        elif not h.late_marked:
            stamp = min(clock, handins.now(terms.iso(due))) if due else clock
            source = "canvas: not marked late"
        else:
            stamp, source = clock, "canvas: marked late, collect time"
            found_notes.append(("LATE_MARKED", "Canvas marked this hand-in late; without --times its time is this "
                                "collect's"))
        lms_meta = {"canvas_id": h.canvas_id, "late_marked": h.late_marked}
        lines.append(_hand_in(h.student, h.assignment, contents, found_notes, stamp, source, lms_meta, term, notes))
    return lines


def _hand_in(student: str, assignment: str, contents: dict[str, bytes], found: list[tuple[str, str]], stamp: str,
             source: str, lms_meta: dict | None, term: terms.Term | None, notes: dict[str, list[list[str]]]) -> str:
    """Keep one hand-in and publish the counted one to ``submitted/``; the collect's line for it."""
    key = f"{student}/{assignment}"
    dest = Workspace.from_env().submission(student, assignment)
    if contents:
        handins.keep(student, assignment, contents, stamp, source, lms_meta)
    elif not handins.hand_ins(student, assignment):
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
    else:
        found.append(("NO_NOTEBOOK", "this collect found no notebook of the assignment; the earlier hand-in counts"))
    found += handins.publish(student, assignment, term, dest)
    notes[key] = [list(n) for n in found]
    extra = "; ".join(" ".join(n) for n in notes[key])
    return f"collected {key}" + (f" ({extra})" if extra else "")


def _files(root: Path) -> list[Path]:
    """Every file and symlink under ``root``, without following symlinked folders."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if d not in IGNORED_NAMES]
        found += [Path(folder) / name for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]]
    return sorted(found)


def _regular(path: Path) -> str | None:
    """Why ``path`` cannot be collected (a symlink, not a regular file, too big), or None."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link (submit the file itself)"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size > MAX_BYTES:
        return f"{info.st_size} bytes, over the {MAX_BYTES} byte limit"
    return None


def _select(assignment: str, files: list[Path], loose: list[Path]) -> tuple[dict[str, bytes], list[tuple[str, str]]]:
    """The assignment's notebooks among one submission's files (bytes by name); notes (code, detail) for the log."""
    wanted = [f"{nb}.ipynb" for nb in notebook_names(assignment)]
    notes: list[tuple[str, str]] = []
    refused = {f: why for f in files if (why := _regular(f))}
    for f, why in refused.items():
        notes.append(("NOT_COLLECTED", f"{f.name}: {why}"))
    files = [f for f in files if f not in refused]
    by_name = {f.name: f for f in files}
    chosen: dict[str, Path] = {name: by_name[name] for name in wanted if name in by_name}
    others = [f for f in files if f not in chosen.values()] + loose
    spare = [f for f in others if f.suffix == ".ipynb"]
    if len(wanted) == 1 and not chosen and len(spare) == 1:  # e.g. "partitioner (1).ipynb"
        chosen[wanted[0]] = spare[0]
        others.remove(spare[0])
        notes.append(("RENAMED", f"{spare[0].name} -> {wanted[0]}"))
    if any(f.name == "timestamp.txt" for f in others):
        notes.append(("TIMESTAMP_IGNORED", "the submission time is the collect's, not the learner's timestamp.txt"))
    if others:
        shown = ", ".join(sorted(str(f.name) for f in others)[:5]) + (", ..." if len(others) > 5 else "")
        notes.append(("EXTRA_FILES_IGNORED", f"{len(others)} ({shown})"))
    return {name: src.read_bytes() for name, src in chosen.items()}, notes

"""collect: copy only an assignment's notebooks from a plain folder of submissions.

The folder is the learners': everything in it is untrusted. Only regular
files are read (a symlink is skipped and noted, never followed: it could point
at ``solutions/`` or any file of the grader's), each at most ``MAX_BYTES``.
The submission time is the instructor's: the time this collect first saw
these exact notebook bytes (a learner's own ``timestamp.txt`` is ignored).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
from pathlib import Path

from .. import assignments, instructor_dir, notebook_names
from .course import IGNORED_NAMES, STUDENT_ID

MAX_BYTES = 20 << 20  # a notebook of this course is well under 1 MB; larger ones are not collected


def _notes_path() -> Path:
    return instructor_dir() / "collect_notes.json"


def load_notes() -> dict[str, list[list[str]]]:
    path = _notes_path()
    return json.loads(path.read_text()) if path.exists() else {}


def collect(folder: Path, assignment: str | None = None) -> list[str]:
    """Copy submissions from ``folder`` into ``instructor/submitted/`` (see README.md for the layouts).

    Accepted: ``folder/<student>/<assignment>/<notebook>.ipynb`` and the flat
    ``folder/<student>/<notebook>.ipynb`` (the notebook's name tells the
    assignment, or ``assignment`` says it). A collected submission replaces the
    previous copy; its ``timestamp.txt`` is the instructor's clock at the first
    collect of these bytes, so collecting the same files again changes nothing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"collect: {folder} is not a folder (expected FOLDER/<student>/<assignment>/<nb>.ipynb)")
    known = assignments()
    if assignment is not None and assignment not in known:
        raise SystemExit(f"unknown assignment {assignment!r}: solutions/ holds {known}")
    owner = {f"{nb}.ipynb": a for a in known for nb in notebook_names(a)}
    notes = load_notes()
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
            key = f"{student}/{a}"
            notes[key] = [list(n) for n in _copy_submission(student, a, files, loose if len(found) == 1 else [])]
            extra = "; ".join(" ".join(n) for n in notes[key])
            lines.append(f"collected {key}" + (f" ({extra})" if extra else ""))
    _notes_path().parent.mkdir(parents=True, exist_ok=True)
    _notes_path().write_text(json.dumps(notes, indent=1, sort_keys=True))
    for line in lines:
        print(line)
    return lines


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


def _copy_submission(student: str, assignment: str, files: list[Path], loose: list[Path]) -> list[tuple[str, str]]:
    """Copy the assignment's notebooks of one submission; returns notes (code, detail) for the log line."""
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
    dest = instructor_dir() / "submitted" / student / assignment
    contents = {name: src.read_bytes() for name, src in chosen.items()}
    stamp = _same_stamp(dest, contents)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name, data in contents.items():
        (dest / name).write_bytes(data)
    if chosen:
        when = stamp or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
        (dest / "timestamp.txt").write_text(when)
    if any(f.name == "timestamp.txt" for f in others):
        notes.append(("TIMESTAMP_IGNORED", "the submission time is the collect's, not the learner's timestamp.txt"))
    if others:
        shown = ", ".join(sorted(str(f.name) for f in others)[:5]) + (", ..." if len(others) > 5 else "")
        notes.append(("EXTRA_FILES_IGNORED", f"{len(others)} ({shown})"))
    return notes


def _same_stamp(dest: Path, contents: dict[str, bytes]) -> str | None:
    """The timestamp already collected for exactly these notebook bytes, if any (so re-collecting changes nothing)."""
    stamp = dest / "timestamp.txt"
    if not stamp.exists() or not contents:
        return None
    for name, data in contents.items():
        old = dest / name
        if not old.exists() or old.read_bytes() != data:
            return None
    return stamp.read_text().strip()

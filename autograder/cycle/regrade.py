"""regrade: grade again after a judge is fixed or the course file changed, and keep what changed.

``regrade`` runs the grading jobs again for one student, one assignment or
everything (``--force`` on just those), merges, and compares each result
record's final score with the one before: every change is appended to
``instructor/regrades.csv`` (when, assignment, student, old score, new score,
the reason given) and only the students whose score or check verdicts changed
get their feedback pages rebuilt (a failure message alone, which names the cases drawn this time, is
not a change). Running it again with nothing changed
changes nothing: the judge scores the same definitions the same way at any
draw, and no row is written for an equal score. A course-file change (an
extension granted after grading) needs no jobs: ``--no-run`` only merges
again, which applies the late policy anew.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..workspace import Workspace
from . import record
from .course import resolve

HISTORY_COLUMNS = ["when", "assignment", "student", "old_score", "new_score", "max_score", "reason"]


def history_path() -> Path:
    return Workspace.from_env().regrades


def _verdicts(found: dict[str, Any] | None) -> Any:
    if found is None:
        return None
    return found["final"], found["status"], {gid: c["points"] for gid, c in found["checks"].items()}


def regrade(names: Iterable[str] | None = None, students: Iterable[str] | None = None, reason: str = "",
            jobs: int = 1, run: bool = True) -> list[list[str]]:
    """Regrade ``students`` (default: all) on ``names`` (default: all); returns the history rows written."""
    from ..sandbox.launch import sandbox_available
    from .jobs import merge, plan
    from .publish import feedback
    from .workers import NO_SANDBOX, run_workers, submissions

    if not reason.strip():
        raise SystemExit("regrade needs --reason \"...\" (what was fixed): it goes into the history with each change")
    names = resolve(names)
    wanted = set(students) if students else None
    if wanted is not None:
        unknown = sorted(s for s in wanted if not any(s in submissions(a) for a in names))
        if unknown:
            raise SystemExit(f"regrade: no collected submission of {names} for {unknown} "
                             "(student ids as in instructor/submitted/)")
    chosen = [a for a in names if any(wanted is None or s in wanted for s in submissions(a))]
    before = {(a, s): _verdicts(record.read(a, s)) for a in chosen for s in submissions(a)}
    if run:
        if os.environ.get(NO_SANDBOX) != "1" and not sandbox_available():
            raise SystemExit("the grading sandbox (bubblewrap) does not work here: install it with "
                             "`make bubblewrap`, or regrade with --no-sandbox (see autograder/README.md)")
        todo = [(a, s) for a, s in plan(chosen, force=True) if wanted is None or s in wanted]
        crashed = run_workers(todo, jobs)
    else:
        crashed = set()
    merge(chosen, crashed)
    rows, changed = [], {}
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for (a, s), old in sorted(before.items()):
        new = record.read(a, s)
        if _verdicts(new) == old:
            continue
        changed.setdefault(a, []).append(s)
        if new is not None and (old is None or old[0] != new["final"]):
            rows.append([when, a, s, "" if old is None else f"{old[0]:g}", f"{new['final']:g}", f"{new['max']:g}",
                         reason])
    _append(rows)
    for a, who in changed.items():
        feedback([a], who)
    for row in rows:
        print(f"regraded {row[1]} {row[2]}: {row[3] or '-'} -> {row[4]} / {row[5]} ({reason})")
    print(f"regrade: {len(rows)} score(s) changed, feedback rebuilt for {sum(map(len, changed.values()))} "
          f"submission(s); history in {history_path()}")
    return rows


def _append(rows: list[list[str]]) -> None:
    path = history_path()
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(HISTORY_COLUMNS)
        writer.writerows(rows)


def history() -> list[dict[str, str]]:
    path = history_path()
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))

"""What the grading tests share: the instructor command, the class's log lines and gradebook.

The release checks (test_release.py) and the graded class (test_class.py) read
one temporary instructor folder; the fixtures that build it (conftest.py) are
session-scoped so the release is generated and the class graded once.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from autograder import assignments
from autograder.sandbox.launch import UID_SPAN, uid_base
from autograder.selftest import fakeclass, hostile

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = ["01_microbatching", "02_partitioner", "03_scheduler", "04_recomputation", "05_assembling",
            "06_distributed"]
ALL = sorted(set(EXPECTED) | set(assignments()))
SMALL = "02_partitioner"  # gets the hard cases: few cells, fast, three exercises
LINE = re.compile(r"^(\S+)  (\S+)  ([\d.]+)/([\d.]+)  (.*?)(?:  \[[\d.]+ s\])?$")


def present(assignment: str) -> None:
    if assignment not in assignments():
        pytest.skip(f"solutions/{assignment}/ has no notebook yet")


def cli(*args: object, env: dict[str, str], status: int | None = 0, timeout: float = 1500
        ) -> subprocess.CompletedProcess:
    """``python -m autograder ARGS``; asserts its exit status unless ``status`` is None."""
    proc = subprocess.run([sys.executable, "-m", "autograder", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    command = " ".join(map(str, args))
    assert status is None or proc.returncode == status, (
        f"python -m autograder {command} exited with {proc.returncode}, expected {status}:\n"
        f"{proc.stdout}\n{proc.stderr}")
    return proc


def workspace(env: dict[str, str]) -> Path:
    return Path(env["GPIPE_TEST_WORKSPACE"])


@dataclass
class Graded:
    cases: list[fakeclass.Case]
    attacks: list[hostile.Attack]
    lines: dict[tuple[str, str], str]  # (assignment, student) -> log line
    cells: dict[tuple[str, str], dict[str, tuple[float, float]]]  # -> grade_id -> (score, max)
    scores: dict[tuple[str, str], tuple[float, float]]
    seconds: float
    output: str
    status: int  # the exit status of `all`
    left_running: list[int]  # sandbox processes alive right after `all` returned (must be none)
    repo_before: dict[str, bytes]  # the files the hostile class attacks, before grading


def read_gradebook(env: dict[str, str]) -> tuple[dict, dict]:
    from nbgrader.api import Gradebook

    cells, scores = {}, {}
    db = f"sqlite:///{env['GPIPE_INSTRUCTOR_DIR']}/gradebook.db"
    with Gradebook(db, "gpipe-course") as gb:
        for a in gb.assignments:
            for sub in gb.assignment_submissions(a.name):
                key = (a.name, sub.student.id)
                scores[key] = (sub.score, sub.max_score)
                cells[key] = {g.name: (g.score, g.max_score) for nb in sub.notebooks for g in nb.grades}
    return cells, scores


def parse_lines(output: str) -> dict[tuple[str, str], str]:
    lines = {}
    for line in output.splitlines():
        m = LINE.match(line)
        if m and m.group(1) in ALL:
            assert (m.group(1), m.group(2)) not in lines, f"two log lines for {m.group(2)} on {m.group(1)}"
            lines[(m.group(1), m.group(2))] = line
    return lines


def lost(graded: Graded, assignment: str, student: str) -> set[str]:
    cells = graded.cells.get((assignment, student))
    assert cells is not None, f"no grades for {student} on {assignment}:\n{graded.output[-3000:]}"
    return {name for name, (score, top) in cells.items() if score < top}


def case(graded: Graded, assignment: str, student: str) -> fakeclass.Case:
    return next(c for c in graded.cases if c.assignment == assignment and c.student == student)


def sandbox_processes() -> list[int]:
    """Live processes owned by a sandbox uid of this test session (conftest.py gives it a uid base of its own)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(ln.split(":", 1) for ln in status.read_text().splitlines() if ":" in ln)
        except (OSError, ValueError):
            continue
        uid = int(fields["Uid"].split()[0])
        if uid_base() <= uid < uid_base() + UID_SPAN and not fields["State"].strip().startswith("Z"):
            found.append(int(status.parent.name))
    return found


ATTACKED = ["solutions/02_partitioner/partitioner.ipynb", "gpipe_core/engine/partition.py",
            "autograder/judge/__init__.py",
            "pwned.txt"]


def attacked_files() -> dict[str, bytes]:
    """The repository files the hostile class tries to rewrite (b"" if absent)."""
    return {name: (ROOT / name).read_bytes() if (ROOT / name).exists() else b"" for name in ATTACKED}

"""Grading time per submission against one bare ``python -c "import torch"``, measured side by side.

A grade costs at least one sandboxed interpreter that imports torch (the
probe), so the import is the yardstick: the target is a whole submission
(``all``: collect, grade, merge, feedback, export) in at most twice that. The
class is two honest submissions per assignment (the course's solutions under
two student ids); it is graded with ``--jobs 1`` and ``--jobs 2`` in fresh
instructor folders. Per assignment, a job's own time (the phases it records)
is compared with the import. Registering the assignments in the gradebook (nbgrader's
generate, once per assignment and term) is timed apart and not charged to
submissions. The phases come from each submission's ``result.json`` and the
commands' own clocks.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from .common import Row

ROOT = Path(__file__).resolve().parents[1]
PER_ASSIGNMENT = 2


def _run(*args: object, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autograder", *map(str, args)], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def torch_import(repeats: int = 3) -> float:
    """Median wall time of a bare ``python -c "import torch"``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _class(folder: Path, released: Path, names: list[str]) -> int:
    import nbformat

    from autograder import notebook_names
    from autograder.selftest.fakeclass import solved

    for a in names:
        nb = notebook_names(a)[0]
        for student in ("ada", "bob")[:PER_ASSIGNMENT]:
            (folder / student / a).mkdir(parents=True, exist_ok=True)
            nbformat.write(solved(a, nb, released), folder / student / a / f"{nb}.ipynb")
    return PER_ASSIGNMENT * len(names)


def grade_class(jobs: int, names: list[str], workdir: Path) -> dict:
    """``all --jobs J`` over the class in a fresh instructor folder; its wall time, each job's phases."""
    env = dict(os.environ, GPIPE_INSTRUCTOR_DIR=str(workdir / f"instructor-{jobs}"))
    released = workdir / "released"
    if not released.exists():
        _run("release", "--into", released, *names, env=env)
    n = _class(workdir / "class", released, names)
    _run("collect", workdir / "class", env=env)
    register = _run("jobs", *names, env=env)  # registers each assignment (once per term), lists the jobs
    wall = _run("all", workdir / "class", "--jobs", jobs, "--out", workdir / f"grades-{jobs}.csv", env=env)
    phases: dict[str, float] = defaultdict(float)
    per_assignment: dict[str, float] = defaultdict(float)
    for result in Path(env["GPIPE_INSTRUCTOR_DIR"], "autograded").glob("*/*/result.json"):
        for phase, seconds in json.loads(result.read_text()).get("timings", {}).items():
            phases[phase] += seconds
            per_assignment[result.parent.name] += seconds
    return {"submissions": n, "wall": wall, "register": register, "phases": dict(phases),
            "assignments": dict(per_assignment)}


def run(quick: bool = False) -> list[Row]:
    from autograder import assignments

    names = assignments()[:2] if quick else assignments()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        yardstick = torch_import()
        rows.append(Row("grading", "bare python -c 'import torch'", yardstick, "s"))
        for jobs in (1, 2):
            got = grade_class(jobs, names, Path(tmp))
            n = got["submissions"]
            per = got["wall"] / n
            rows.append(Row("grading", f"--jobs {jobs}: one submission / one torch import", per / yardstick,
                            target="<= 2.0" if jobs == 1 else "",
                            detail=f"{per:.2f} s per submission, {n} submissions, registering {got['register']:.1f} s"
                                   " once (not charged)"))
            for a, seconds in sorted(got["assignments"].items()):
                rows.append(Row("grading", f"--jobs {jobs}: {a}, one job / torch import",
                                seconds / PER_ASSIGNMENT / yardstick, detail=f"{seconds / PER_ASSIGNMENT:.2f} s"))
            jobs_time = sum(got["phases"].values())
            split = {**got["phases"],  # a job's phases; with J workers, J jobs share the wall time
                     "the command, workers, merge, feedback and export": max(0.0, got["wall"] - jobs_time / jobs)}
            rows.append(Row("grading", f"--jobs {jobs}: breakdown per submission", per, "s",
                            detail=", ".join(f"{k} {v / n:.2f}" for k, v in split.items())))
    return rows

"""Grading as independent jobs: a job list, one job per line run in any order, and a merge that is idempotent.

This is how a course too large for one machine runs the grader (a Slurm job
array or a Kubernetes Indexed Job runs ``job LIST INDEX`` per line; README,
"Many machines"). Here the jobs run one after the other, last line first, in
a fresh instructor folder: each stores only its own files, the merge writes
the gradebook, and merging again changes neither the gradebook nor the lines.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from classroom import cli, parse_lines, read_gradebook

from autograder.sandbox.launch import sandbox_available
from autograder.selftest.fakeclass import solved

pytestmark = [pytest.mark.timeout(900),  # a watchdog: the jobs take seconds on a quiet machine
              pytest.mark.sandbox,  # `python -m autograder job` grades in bubblewrap
              pytest.mark.skipif(not sandbox_available(), reason="needs the sandbox: make bubblewrap")]
A = "02_partitioner"


def test_jobs_run_in_any_order_and_the_merge_is_idempotent(tmp_path: Path, released: Path) -> None:
    env = dict(os.environ, GPIPE_INSTRUCTOR_DIR=str(tmp_path / "instructor"), PYTHONUNBUFFERED="1")
    for student, nb in (("ada", solved(A, "partitioner", released)),
                        ("bob", nbformat.read(released / A / "partitioner.ipynb", as_version=4))):
        (tmp_path / "class" / student / A).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "class" / student / A / "partitioner.ipynb")
    cli("collect", tmp_path / "class", env=env)
    cli("jobs", A, "--out", tmp_path / "jobs.txt", env=env)
    lines = (tmp_path / "jobs.txt").read_text().splitlines()
    assert sorted(lines) == [f"{A} ada", f"{A} bob"]
    for index in reversed(range(len(lines))):
        cli("job", tmp_path / "jobs.txt", index, env=env)
    assert read_gradebook(env) == ({}, {}), "a job wrote the gradebook: only the merge may"
    first = parse_lines(cli("merge", A, env=env).stdout)
    book = read_gradebook(env)
    assert book[1] == {(A, "ada"): (13.0, 13.0), (A, "bob"): (0.0, 13.0)}, book[1]
    again = parse_lines(cli("merge", A, env=env).stdout)
    assert again == first and read_gradebook(env) == book
    assert cli("jobs", A, env=env).stdout == "", "a graded submission was listed again"
    cli("job", tmp_path / "jobs.txt", 2, env=env, status=1)  # past the end: a clear error, not a traceback

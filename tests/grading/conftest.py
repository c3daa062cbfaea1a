"""The instructor folder the grading tests share: one release, one graded class.

Session-scoped so that test_release.py and test_class.py pay for
``nbgrader generate_assignment`` and for grading the class only once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from classroom import SMALL, Graded, attacked_files, cli, parse_lines, read_gradebook, sandbox_processes, workspace

from autograder import assignments
from autograder.sandbox.launch import UID_BASE, UID_ENV, UID_SPAN
from autograder.selftest import fakeclass, hostile, hostile_two

# This session's sandboxes get uids of their own, so "nothing left running" never counts another grader's.
os.environ.setdefault(UID_ENV, str(UID_BASE + (1 + os.getpid() % 200) * UID_SPAN))  # below 2**31: bwrap maps no more


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    workspace = tmp_path_factory.mktemp("grading")
    return dict(os.environ, GPIPE_INSTRUCTOR_DIR=str(workspace / "instructor"), PYTHONUNBUFFERED="1",
                GPIPE_TEST_WORKSPACE=str(workspace))


@pytest.fixture(scope="session")
def released(env: dict[str, str]) -> Path:
    """A fresh ``nbgrader generate_assignment`` of every assignment, outside notebooks/."""
    into = workspace(env) / "released"
    if assignments():
        cli("release", "--into", into, env=env)
    return into


@pytest.fixture(scope="session")
def graded(env: dict[str, str], released: Path) -> Graded:
    """The honest class (fakeclass) and the hostile class (hostile), graded together by one `all` run."""
    small = SMALL if SMALL in assignments() else next((a for a in assignments() if fakeclass.planted(a)), None)
    if small is None:
        pytest.skip("no assignment with planted mistakes yet")
    folder = workspace(env) / "class"
    cases = fakeclass.build(folder, released, assignments(), small, every_mistake=False)  # the rest: test_judge
    os.environ["GPIPE_INSTRUCTOR_DIR"], saved = env["GPIPE_INSTRUCTOR_DIR"], os.environ.get("GPIPE_INSTRUCTOR_DIR")
    try:  # the attacks aim at this class's instructor folder
        attacks = hostile.build(folder, released) + hostile_two.build(folder, released) \
            if hostile.ASSIGNMENT in assignments() else []
    finally:
        if saved is None:
            del os.environ["GPIPE_INSTRUCTOR_DIR"]
        else:
            os.environ["GPIPE_INSTRUCTOR_DIR"] = saved
    before = attacked_files()
    start = time.monotonic()
    proc = cli("all", folder, "--jobs", "2", "--out", workspace(env) / "grades.csv", env=env, status=None)
    seconds = time.monotonic() - start
    left = sandbox_processes()
    cells, scores = read_gradebook(env)
    return Graded(cases, attacks, parse_lines(proc.stdout), cells, scores, seconds, proc.stdout + proc.stderr,
                  proc.returncode, left, before)

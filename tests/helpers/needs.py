"""What a test needs beyond Python and torch, as pytest marks, and how a test is found to need it.

``make test-fast`` deselects every test that needs one of these, so the edit
loop runs the engine and course unit tests in minutes; ``make test`` runs them
all. A need is found two ways, and ``tests/conftest.py`` applies both:

* by fixture, at collection: a test whose fixtures (transitively) include one
  in ``FIXTURE_NEEDS`` gets that mark, wherever the test lives;
* by launch, while it runs: every command the test process starts is seen
  through the interpreter's audit hook (``subprocess.Popen``), and a test that
  started bubblewrap, torchrun, Chromium or a book build without the matching
  mark fails at teardown, naming the command. A mark missed by hand is thus
  found the first time the test runs, not when ``make test-fast`` turns slow.

Commands known to start one of these in a child count too (``python -m
autograder job``, ``all`` and the other grading commands start bubblewrap;
``gpipe train --distributed`` starts torchrun). Anything else a child starts
is covered by the fixture that does it or by an explicit mark on the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import pytest

COLLECTED = pytest.StashKey[list]()  # every collected test, before -m or -k deselect any (tests/test_marks.py)
LAUNCHED: list[list[str]] = []  # the commands started since the running test began (tests/conftest.py fills it)

NEEDS = {
    "browser": "headless Chromium driven by Playwright (Debian's chromium package)",
    "book": "a strict Jupyter Book build of the site (minutes when pages must execute)",
    "sandbox": "bubblewrap and cgroups: commands run in the grader's sandbox (root)",
    "distributed": "torch.distributed ranks in their own processes (torchrun, gloo)",
    "class": "a whole generated class graded end to end (the graded fixture)",
    "slow": "no special tool, but a minute or more of work (nbgrader release, whole notebooks)",
}

# fixture -> the marks every test using it needs (fixtures that depend on these inherit them)
FIXTURE_NEEDS = {
    "site": {"book"},
    "browser": {"browser"},
    "graded": {"class", "sandbox"},
    "released": {"slow"},
}


# fixture -> the pytest-xdist group of every test using it: one worker builds the fixture, once (first match wins)
FIXTURE_GROUPS = (("released", "class"), ("graded", "class"), ("site", "book"))
# test file -> its group, for make test's scheduler (GroupScheduling): the workers' collection cannot pass a group to
# the controller on every pytest (xdist's own --dist loadgroup renames nodeids, which pytest 9 ignores), and a file
# says it from the nodeid alone. tests/test_marks.py checks that every test a fixture puts in a group is in its file.
GROUP_FILES = {
    "tests/grading/test_class.py": "class", "tests/grading/test_hostile.py": "class",
    "tests/grading/test_release.py": "class", "tests/grading/test_jobs.py": "class",
    "tests/grading/test_rehearsal.py": "class", "tests/test_book.py": "book",
}


def fixture_group(fixturenames: Iterable[str]) -> str | None:
    """The xdist group of a test whose fixtures include an expensive session fixture, else None."""
    names = set(fixturenames)
    return next((group for fixture, group in FIXTURE_GROUPS if fixture in names), None)


def file_group(nodeid: str) -> str | None:
    """The group make test's scheduler gives a test, from its file (None: the test is scheduled on its own)."""
    return GROUP_FILES.get(nodeid.split("::", 1)[0])


def make_scheduler(config: pytest.Config, log: object) -> object:
    """pytest-xdist's load-scope scheduler, with a scope per group of GROUP_FILES and per test elsewhere: the
    largest groups (the graded class, the built site) go out first, one worker each, and single tests fill in."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return file_group(nodeid) or nodeid

    return GroupScheduling(config, log)


def fixture_needs(fixturenames: Iterable[str]) -> set[str]:
    """The marks implied by a test's fixture closure."""
    return set().union(*(FIXTURE_NEEDS.get(name, set()) for name in fixturenames))


def launch_needs(argv: str | bytes | Sequence[str | bytes | os.PathLike]) -> set[str]:
    """The marks a command line implies, from the program and script it names."""
    if isinstance(argv, (str, bytes)):
        argv = [argv]
    words = [os.fsdecode(a) for a in argv]
    names = {os.path.basename(w) for w in words}
    found = set()
    if "bwrap" in names or any(w.endswith(os.path.join("sandbox", "helper.py")) for w in words):
        found.add("sandbox")
    if "torchrun" in names or "torch.distributed.run" in words:
        found.add("distributed")
    if names & {"chromium", "chrome", "headless_shell"} or any("playwright" in w and "driver" in w for w in words):
        found.add("browser")
    if "jupyter-book" in names or any(w.endswith(os.path.join("book", "build.py")) for w in words):
        found.add("book")
    if "gpipe_core.cli" in words and "--distributed" in words:  # `gpipe train --distributed` starts torchrun
        found.add("distributed")
    if _module_command(words, "autograder") in GRADING and "--no-sandbox" not in words:
        found.add("sandbox")  # the grader runs every notebook and probe in bubblewrap
    return found


GRADING = {"all", "autograde", "job", "_worker", "regrade"}  # `python -m autograder` commands that grade in bubblewrap


def _module_command(words: list[str], module: str) -> str | None:
    """The first argument after ``-m module``, if the command runs that module."""
    for i in range(len(words) - 2):
        if words[i] == "-m" and words[i + 1] == module:
            return words[i + 2]
    return None


def unmarked(launches: Iterable[Sequence[str]], marks: set[str]) -> list[str]:
    """One line per launched command whose needs the test's marks do not cover."""
    lines = []
    for argv in launches:
        if missing := launch_needs(argv) - marks:
            shown = " ".join(os.fsdecode(a) for a in argv)
            lines.append(f"{shown[:160]} needs @pytest.mark.{', @pytest.mark.'.join(sorted(missing))}")
    return lines

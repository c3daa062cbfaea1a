"""Every test says what it needs, so ``make test-fast`` can leave out exactly the tests that need something.

The marks and their rules live in ``tests/helpers/needs.py`` and
``tests/conftest.py`` applies them. Checked here: the rules recognise the
commands that need a mark; the audit hook really sees this session's launches;
every test collected in this session (before -m deselects any) carries the
marks its fixtures imply and the marks of the launchers it calls by name; and
``make test-fast`` leaves out every mark pyproject.toml registers as a need.
"""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.needs import (
    COLLECTED,
    GROUP_FILES,
    LAUNCHED,
    NEEDS,
    file_group,
    fixture_group,
    fixture_needs,
    launch_needs,
    unmarked,
)

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
# launchers a test may call by name, and the mark a direct call needs
CALLS = {"torchrun": "distributed", "run_sandboxed": "sandbox", "sync_playwright": "browser"}


@pytest.mark.parametrize(("argv", "needs"), [
    (["/usr/bin/bwrap", "--unshare-all", "python3"], {"sandbox"}),
    ([PY, "-S", "-I", "/repo/autograder/sandbox/helper.py", "{}"], {"sandbox"}),
    ([PY, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone", "t.py"], {"distributed"}),
    (["/venv/bin/torchrun", "--standalone", "t.py"], {"distributed"}),
    ([PY, "-m", "gpipe_core.cli", "train", "--distributed", "-K", "2"], {"distributed"}),
    (["/venv/lib/python3.11/site-packages/playwright/driver/node", "cli.js", "run-driver"], {"browser"}),
    (["/usr/bin/chromium", "--headless"], {"browser"}),
    ([PY, "/repo/book/build.py"], {"book"}),
    (["jupyter-book", "build", "."], {"book"}),
    ([PY, "-m", "gpipe_core.cli", "train", "-K", "2"], set()),
    ([PY, "-m", "autograder", "job", "jobs.txt", "0"], {"sandbox"}),
    ([PY, "-m", "autograder", "all", "class/", "--jobs", "2"], {"sandbox"}),
    ([PY, "-m", "autograder", "all", "class/", "--no-sandbox"], set()),
    ([PY, "-m", "autograder", "release", "--into", "r/"], set()),
    ([PY, "-m", "autograder", "draws", "02_partitioner"], set()),  # the course's own mistakes, unsandboxed
    ([PY, "-c", "import torch"], set()),
    ("ls -l", set()),
])
def test_commands_name_their_needs(argv: list[str] | str, needs: set[str]) -> None:
    assert launch_needs(argv) == needs


def test_an_unmarked_launch_is_named_with_the_mark_it_needs() -> None:
    launches = [["/usr/bin/bwrap", "--unshare-all"], [PY, "-c", "pass"]]
    assert unmarked(launches, set()) == ["/usr/bin/bwrap --unshare-all needs @pytest.mark.sandbox"]
    assert unmarked(launches, {"sandbox"}) == []
    assert fixture_needs(["tmp_path", "graded"]) == {"class", "sandbox"}


def test_the_audit_hook_sees_this_tests_launches() -> None:
    subprocess.run([PY, "-c", "pass"], check=True)
    assert [PY, "-c", "pass"] in LAUNCHED, "tests/conftest.py's audit hook did not record a launch"


@functools.cache
def _calls_by_function(path: Path) -> dict[str, set[str]]:
    """For each function defined in a test module, the launchers in CALLS it calls by name."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef):
            found.setdefault(node.name, set()).update(
                n.func.id for n in ast.walk(node)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in CALLS)
    return found


def _direct_calls(item: pytest.Item) -> set[str]:
    """Names of the launchers in CALLS that the test function itself calls (read from its module's source)."""
    function = getattr(item, "function", None)
    if function is None or item.path.suffix != ".py":
        return set()
    return _calls_by_function(item.path).get(function.__name__, set())


def test_every_collected_test_carries_the_marks_it_needs(request: pytest.FixtureRequest) -> None:
    items = request.config.stash.get(COLLECTED, [])
    assert request.node.nodeid in {i.nodeid for i in items}, "tests/conftest.py did not record the collection"
    missing = {}
    for item in items:
        marks = {m.name for m in item.iter_markers()}
        needed = fixture_needs(item.fixturenames) | {CALLS[c] for c in _direct_calls(item)}
        if needed - marks:
            missing[item.nodeid] = sorted(needed - marks)
    assert not missing, f"tests lacking the marks they need (tests/helpers/needs.py): {missing}"


def test_test_fast_leaves_out_every_need_and_pyproject_registers_each(pytestconfig: pytest.Config) -> None:
    fast = re.search(r"^FAST\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M)
    assert fast, "the Makefile has no FAST selection for make test-fast"
    left_out = set(re.findall(r"\bnot (\w+)", fast.group(1)))
    assert left_out == set(NEEDS), f"make test-fast must leave out exactly {sorted(NEEDS)}, not {sorted(left_out)}"
    registered = {line.split(":", 1)[0] for line in pytestconfig.getini("markers")}
    assert set(NEEDS) <= registered, f"register {sorted(set(NEEDS) - registered)} in pyproject.toml"
    assert {"--durations=25", "--strict-markers"} <= set(pytestconfig.getini("addopts"))


def test_tests_sharing_an_expensive_session_fixture_share_one_worker(request: pytest.FixtureRequest) -> None:
    """make test runs one worker per core: a test of the graded class or of the built site scheduled on another
    worker would build that fixture a second time (minutes), so its file must be in the fixture's group."""
    assert fixture_group(["tmp_path", "graded", "released", "env"]) == "class"
    assert fixture_group(["released"]) == "class" and fixture_group(["server", "site"]) == "book"
    assert fixture_group(["tmp_path", "model"]) is None
    assert file_group("tests/grading/test_class.py::test_x[01]") == "class"
    assert file_group("tests/test_cli.py::test_x") is None
    wrong = {item.nodeid: fixture_group(item.fixturenames) for item in request.config.stash.get(COLLECTED, [])
             if fixture_group(item.fixturenames) not in (None, file_group(item.nodeid))}
    assert not wrong, f"add these tests' files to GROUP_FILES in tests/helpers/needs.py with their group: {wrong}"
    assert all((ROOT / path).is_file() for path in GROUP_FILES), "GROUP_FILES names a file that does not exist"
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^\s.*pytest .* -n \$\(WORKERS\)", make, flags=re.M), "make test must run pytest-xdist workers"

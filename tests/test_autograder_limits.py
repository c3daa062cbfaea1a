"""Fast checks of the grader's parts: the kernel sandbox, the limits table, collecting a folder.

The end-to-end class in tests/grading/test_class.py shows these working together; these
tests pin each part down on its own, in seconds, so a failure names the part.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import assignments, notebook_names
from autograder.limits import DEFAULT, PER_ASSIGNMENT, limits_for

ROOT = Path(__file__).resolve().parents[1]


SANDBOX = ROOT / "autograder" / "sandbox.py"


def sandboxed(memory_mb: int, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SANDBOX), f"--memory-mb={memory_mb}", "--", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60)


def test_sandbox_memory_limit_turns_a_huge_allocation_into_memoryerror() -> None:
    limited = sandboxed(512, "bytearray(2 * 2**30)")
    assert limited.returncode != 0 and "MemoryError" in limited.stderr, limited.stderr
    reserve = "import mmap; mmap.mmap(-1, 2 * 2**30); print('reserved')"  # address space only, never touched
    assert "Cannot allocate memory" in sandboxed(512, reserve).stderr
    unlimited = sandboxed(0, reserve)
    assert unlimited.returncode == 0 and "reserved" in unlimited.stdout, unlimited.stderr


def test_sandbox_hides_gpus_and_core_dumps_when_limited() -> None:
    proc = sandboxed(1024, "import os, resource; print(repr(os.environ['CUDA_VISIBLE_DEVICES']), "
                           "resource.getrlimit(resource.RLIMIT_CORE))")
    assert proc.stdout.split() == ["''", "(0,", "0)"], proc.stdout + proc.stderr


def test_sandbox_rejects_bad_usage() -> None:
    proc = subprocess.run([sys.executable, str(SANDBOX), "--memory=5", "--", "true"], capture_output=True, text=True)
    assert proc.returncode != 0 and "--memory-mb=N" in proc.stderr


def test_kernel_manager_starts_the_kernel_through_the_sandbox(tmp_path: Path) -> None:
    from autograder.execute import SANDBOX as used
    from autograder.execute import LimitedKernelManager

    km = LimitedKernelManager(kernel_name="python3", memory_limit_mb=1500)
    km.connection_file = str(tmp_path / "kernel.json")
    cmd = km.format_kernel_cmd()
    assert cmd[:4] == [sys.executable, used, "--memory-mb=1500", "--"]
    assert "ipykernel_launcher" in " ".join(cmd[4:]) and str(tmp_path / "kernel.json") in cmd


def test_limits_per_assignment_and_overrides() -> None:
    assert limits_for("no_such_assignment", {}) == DEFAULT
    for name, limits in PER_ASSIGNMENT.items():
        assert limits_for(name, {}) == limits
        assert 0 < limits.cell_timeout_s <= limits.notebook_timeout_s and limits.memory_mb > 0
    got = limits_for("02_partitioner", {"GPIPE_GRADE_CELL_TIMEOUT": "7", "GPIPE_GRADE_MEMORY_MB": "0"})
    assert (got.cell_timeout_s, got.memory_mb) == (7, 0)
    with pytest.raises(ValueError, match="GPIPE_GRADE_NOTEBOOK_TIMEOUT"):
        limits_for(None, {"GPIPE_GRADE_NOTEBOOK_TIMEOUT": "ten"})


# ---- collect and screen -------------------------------------------------------------------------

@pytest.fixture
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, Path]:
    if not assignments():
        pytest.skip("no assignment in solutions/ yet")
    monkeypatch.setenv("GPIPE_INSTRUCTOR_DIR", str(tmp_path / "instructor"))
    a = assignments()[0]
    return a, notebook_names(a)[0], tmp_path


def notebook(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), path)
    return path


def test_collect_accepts_nested_and_flat_layouts_and_ignores_extra_files(course: tuple[str, str, Path]) -> None:
    from autograder import cycle

    a, nb, tmp = course
    folder = tmp / "inbox"
    notebook(folder / "ada" / a / f"{nb}.ipynb")
    (folder / "ada" / a / "torch.py").write_text("raise SystemExit")
    notebook(folder / "bob" / f"{nb}.ipynb")  # flat: the notebook's name tells the assignment
    notebook(folder / "cy" / a / f"{nb} (1).ipynb")  # renamed by the learner's browser
    notebook(folder / "not valid!" / a / f"{nb}.ipynb")
    lines = cycle.collect(folder)
    submitted = tmp / "instructor" / "submitted"
    for student in ("ada", "bob", "cy"):
        assert sorted(p.name for p in (submitted / student / a).iterdir()) == [f"{nb}.ipynb", "timestamp.txt"]
    assert any("ada" in ln and "EXTRA_FILES_IGNORED" in ln and "torch.py" in ln for ln in lines), lines
    assert any("cy" in ln and "RENAMED" in ln for ln in lines), lines
    assert any("skipped folder 'not valid!'" in ln and "rename it" in ln for ln in lines), lines
    assert cycle.submissions(a) == ["ada", "bob", "cy"]


def test_collecting_again_keeps_the_timestamp(course: tuple[str, str, Path]) -> None:
    from autograder import cycle

    a, nb, tmp = course
    notebook(tmp / "inbox" / "ada" / a / f"{nb}.ipynb")
    stamp = tmp / "instructor" / "submitted" / "ada" / a / "timestamp.txt"
    cycle.collect(tmp / "inbox")
    first = stamp.read_text()
    cycle.collect(tmp / "inbox")
    assert stamp.read_text() == first and first.endswith("UTC")


def test_flat_layout_with_an_explicit_assignment(course: tuple[str, str, Path]) -> None:
    from autograder import cycle

    a, nb, tmp = course
    notebook(tmp / "inbox" / "ada" / "homework.ipynb")
    cycle.collect(tmp / "inbox", assignment=a)
    assert (tmp / "instructor" / "submitted" / "ada" / a / f"{nb}.ipynb").exists()
    with pytest.raises(SystemExit, match="unknown assignment"):
        cycle.collect(tmp / "inbox", assignment="99_nothing")


def test_screen_names_missing_and_unreadable_notebooks(course: tuple[str, str, Path]) -> None:
    from autograder import cycle

    a, nb, tmp = course
    folder = tmp / "instructor" / "submitted"
    (folder / "gone" / a).mkdir(parents=True)
    (folder / "cut" / a).mkdir(parents=True)
    (folder / "cut" / a / f"{nb}.ipynb").write_text('{"cells": [')
    notebook(folder / "fine" / a / f"{nb}.ipynb")
    assert [code for code, _ in cycle.screen(a, "gone")] == ["MISSING_NOTEBOOK"]
    assert [code for code, _ in cycle.screen(a, "cut")] == ["INVALID_NOTEBOOK"]
    assert cycle.screen(a, "fine") == []

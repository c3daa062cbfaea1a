"""The sandbox on its own, in seconds: what a learner's code can see, reach and use, and that nothing outlives it.

Each test runs a few lines of Python through :func:`autograder.sandbox.launch.run_sandboxed`
the way the grader runs a notebook or a probe, and checks the promise of the
threat model (autograder/README.md) it stands for.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from classroom import sandbox_processes

from autograder.sandbox.launch import run_sandboxed, sandbox_available, writable
from autograder.sandbox.limits import Limits
from autograder.sandbox.treelimits import TreeLimits

ROOT = Path(__file__).resolve().parents[2]
SMALL = Limits(memory_mb=1024, processes=64, file_mb=8, scratch_mb=32, cpu_s=60, output_bytes_notebook=100_000)

pytestmark = pytest.mark.sandbox  # every test here starts bubblewrap (or the sandbox's helper without it)
needs_sandbox = pytest.mark.skipif(not sandbox_available(), reason="bubblewrap cannot run here: make bubblewrap")


def run(code: str, tmp_path: Path, limits: Limits = SMALL, timeout: float = 60, view: Path | None = None,
        isolate: bool = True, **files: str):
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    for name, text in files.items():
        (scratch / name.replace("_", ".")).write_text(text)
    return run_sandboxed([sys.executable, "-c", code], scratch=scratch, limits=limits, view=view, timeout=timeout,
                         isolate=isolate)


@needs_sandbox
def test_it_sees_only_its_scratch_python_and_the_view(tmp_path: Path) -> None:
    view = tmp_path / "view" / "gpipe_core"
    view.mkdir(parents=True)
    (view / "__init__.py").write_text("WHERE = 'view'\n")
    code = f"""
import os, gpipe_core
print(gpipe_core.WHERE, sorted(os.listdir('.')))
for path in {[str(ROOT / 'solutions'), str(ROOT / 'autograder'), str(ROOT / '.git'), str(tmp_path)]!r}:
    print(path, os.path.exists(path))
for path in ('/usr/x', '/grading/gpipe_core/x', '{sys.prefix}/x'):
    try:
        open(path, 'w')
        print('wrote', path)
    except OSError as e:
        print('refused', e.errno)
open('answer.txt', 'w').write('42')
open('new.txt', 'w').write('lost')
"""
    result = run(code, tmp_path, view=tmp_path / "view", answer_txt="")
    lines = result.stdout.decode().splitlines()
    assert result.returncode == 0, result.stderr.decode()
    assert lines[0] == "view ['answer.txt']"
    assert all(ln.endswith("False") for ln in lines[1:5]), lines
    assert all(ln.startswith("refused") for ln in lines[5:8]), lines
    assert (tmp_path / "scratch" / "answer.txt").read_text() == "42"
    assert not (tmp_path / "scratch" / "new.txt").exists()


@needs_sandbox
def test_it_runs_as_its_own_uid_in_its_own_pid_and_network_namespace(tmp_path: Path) -> None:
    """The sandboxed code waits (60 s at most) until the host has looked for it, so no load can hide it."""
    code = """
import os, socket, time
print(os.getuid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
try:
    socket.create_connection(('1.1.1.1', 53), timeout=3)
    print('network')
except OSError:
    print('no network')
for _ in range(600):
    if open('looked.txt').read():
        break
    time.sleep(0.1)
"""
    done: list = []
    worker = threading.Thread(target=lambda: done.append(run(code, tmp_path, looked_txt="")))
    worker.start()
    seen: list[int] = []
    deadline = time.monotonic() + 60  # a watchdog
    while not seen and worker.is_alive() and time.monotonic() < deadline:
        seen = sandbox_processes()  # the host sees the sandbox's processes under a uid of their own
        time.sleep(0.1)
    (tmp_path / "scratch" / "looked.txt").write_text("yes")  # the same file inside: the sandbox may end now
    worker.join()
    out = done[0].stdout.decode().splitlines()
    assert seen, "no process of the sandbox ran under a sandbox uid"
    uid, pids = out[0].split(" ", 1)
    assert uid == "1000" and len(eval(pids)) <= 3, f"it sees processes beyond its own: {out[0]}"  # noqa: S307
    assert out[1] == "no network"


@needs_sandbox
def test_memory_limit_holds_for_the_whole_process_tree(tmp_path: Path) -> None:
    if TreeLimits.create("probe-kind", SMALL).kind == "none":
        pytest.skip("no cgroup can be made here: only per-process limits (README.md, threat model)")
    code = """
import subprocess, sys
hog = "import sys; b = bytearray(600 * 2**20); print('held', flush=True); sys.stdin.read()"
kids = [subprocess.Popen([sys.executable, '-c', hog], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for _ in range(3)]
print([k.stdout.readline() for k in kids])  # each holds its 600 MB together with the others, or was killed
for k in kids:
    k.stdin.close()
print([k.wait() for k in kids])
"""
    result = run(code, tmp_path)  # three children of 600 MB each under 1024 MB, all held at once: one must die
    assert "memory limit" in (result.killed_reason or ""), (result.killed_reason, result.stdout, result.stderr)


@needs_sandbox
def test_a_fork_bomb_stops_at_the_process_limit_and_nothing_is_left(tmp_path: Path) -> None:
    code = """
import os, time
made = 0
for _ in range(200):
    try:
        if os.fork() == 0:
            os.setsid()
            time.sleep(600)
            os._exit(0)
        made += 1
    except OSError:
        break
print(made)
"""
    result = run(code, tmp_path, limits=replace(SMALL, processes=20))
    assert int(result.stdout.decode()) < 20, result.stdout
    assert not sandbox_processes()


@needs_sandbox
def test_file_size_disk_and_output_are_capped_in_bytes(tmp_path: Path) -> None:
    code = """
import errno
try:
    open('big', 'wb').write(bytes(64 * 2**20))
except OSError as e:
    print('file', errno.errorcode[e.errno])
n = 0
try:
    for n in range(100):
        open(f'part{n}', 'wb').write(bytes(7 * 2**20))
except OSError as e:
    print('disk', errno.errorcode[e.errno], n)
print('x' * 10**7)
"""
    result = run(code, tmp_path)
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "file EFBIG" and lines[1].startswith("disk ENOSPC"), lines[:2]
    assert int(lines[1].split()[-1]) <= 32 // 7
    assert len(result.stdout) <= SMALL.output_bytes_notebook and "output beyond" in result.killed_reason


@needs_sandbox
def test_every_writable_place_is_capped_and_nothing_else_can_be_written(tmp_path: Path) -> None:
    """Walk the sandbox's whole tree (but /proc and /sys) creating a file in every folder and opening every file."""
    limits = replace(SMALL, scratch_mb=16, file_mb=2)
    code = f"""
import errno, json, multiprocessing, os, stat
multiprocessing.Semaphore(1)  # POSIX semaphores live in /dev/shm: it must stay usable
folders, files = [], []
for root, dirs, names in os.walk('/'):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ('/proc', '/sys')]
    try:
        os.close(os.open(os.path.join(root, '.probe'), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.unlink(os.path.join(root, '.probe'))
        folders.append(root)
    except OSError:
        pass
    for name in names:
        path = os.path.join(root, name)
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
                files.append(path)
        except OSError:
            pass
filled = {{}}
for folder in folders:
    written, why = 0, 'nothing stopped it'
    try:
        while written < {limits.scratch_mb + 2}:  # 1 MB files, under the file limit: only the place's size stops them
            with open(os.path.join(folder, f'fill{{written}}'), 'wb') as fh:
                fh.write(bytes(2**20))
            written += 1
    except OSError as e:
        why = errno.errorcode[e.errno]
    filled[folder] = [why, written, os.statvfs(folder).f_blocks * os.statvfs(folder).f_frsize]
    for name in os.listdir(folder):
        if name.startswith('fill'):
            os.unlink(os.path.join(folder, name))
handed = {{}}
for what, act in (('write', lambda: open('answer.txt', 'wb').write(bytes({limits.file_mb + 1} * 2**20))),
                  ('truncate', lambda: os.truncate('answer.txt', {limits.file_mb + 1} * 2**20))):
    try:
        act()
        handed[what] = 'allowed'
    except OSError as e:
        handed[what] = errno.errorcode[e.errno]
print(json.dumps([sorted(folders), sorted(files), filled, handed]))
"""
    result = run(code, tmp_path, limits=limits, timeout=120, answer_txt="")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    folders, files, filled, handed = json.loads(result.stdout)
    caps = writable(limits)
    inside = {f: next((c for c in caps if f == c or f.startswith(c + "/")), None) for f in folders}
    assert set(caps) <= set(folders) and None not in inside.values(), (
        f"writable folders {folders}: only {sorted(caps)} and folders inside them may be")
    # a folder inside a capped place (the mount point bubblewrap makes in /tmp for a venv under /tmp) shares its cap
    assert all(filled[f][2] == caps[c] for f, c in inside.items()), filled
    assert files == ["/scratch/answer.txt"], f"writable files {files}: only the grader's output file may be"
    assert sum(caps.values()) == limits.scratch_mb << 20
    for place, cap in caps.items():
        why, written_mb, size = filled[place]
        assert why == "ENOSPC" and size == cap, (place, filled[place], cap)
        assert cap >> 20 >= written_mb >= (cap >> 20) - 1, f"{place} took {written_mb} MB, its cap is {cap >> 20} MB"
    assert handed == {"write": "EFBIG", "truncate": "EFBIG"}, handed
    assert (tmp_path / "scratch" / "answer.txt").stat().st_size <= limits.file_mb << 20


@needs_sandbox
def test_a_timeout_ends_every_process_even_detached_ones(tmp_path: Path) -> None:
    code = """
import os, subprocess, time
subprocess.Popen(['sleep', '600'], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    time.sleep(600)
time.sleep(600)
"""
    result = run(code, tmp_path, timeout=3)
    assert result.timed_out and "stopped" in result.killed_reason
    assert not sandbox_processes()


@needs_sandbox
def test_a_daemon_left_behind_after_a_normal_exit_dies_too(tmp_path: Path) -> None:
    code = """
import subprocess
subprocess.Popen(['sleep', '600'], start_new_session=True)
print('bye')
"""
    result = run(code, tmp_path)
    assert result.returncode == 0 and not result.timed_out and result.stdout == b"bye\n"
    assert not sandbox_processes()


@needs_sandbox
def test_cpu_time_is_limited_per_process(tmp_path: Path) -> None:
    result = run("while True: pass", tmp_path, limits=replace(SMALL, cpu_s=1), timeout=60)
    assert result.returncode != 0 and not result.timed_out


def test_without_isolation_the_limits_still_hold(tmp_path: Path) -> None:
    code = "import os\nprint(os.getcwd())\ntry:\n    bytearray(2 * 2**30)\nexcept MemoryError:\n    print('no memory')"
    result = run(code, tmp_path, isolate=False)
    assert result.stdout.decode().split() == [str((tmp_path / "scratch").resolve()), "no", "memory"], result.stderr


def test_scratch_must_hold_regular_files_only(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "link").symlink_to(ROOT / "solutions")
    with pytest.raises(ValueError, match="regular files only"):
        run_sandboxed(["/bin/true"], scratch=scratch, limits=SMALL, view=None, timeout=10)


@needs_sandbox
def test_a_notebook_run_cuts_output_drops_html_and_survives_loops_and_exits(tmp_path: Path) -> None:
    import nbformat

    from autograder.sandbox.execute import execute

    cells = ["print('x' * 300_000)", "from IPython.display import HTML, display\ndisplay(HTML('<script>1</script>'))",
             "while True:\n    pass", "import os\nos._exit(1)", "print('after')"]
    path = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    ran = execute(path, replace(SMALL, cell_timeout_s=5, notebook_timeout_s=90, output_bytes_cell=10_000), None)
    outputs = [c.outputs for c in ran.notebook.cells]
    assert sum(len(o.get("text", "")) for o in outputs[0]) < 10_000 and "output cut" in outputs[0][-1]["text"]
    assert all(set(o.get("data", {})) <= {"text/plain"} for o in outputs[1]), outputs[1]
    assert [code for code, _ in ran.events] == ["TIMEOUT", "KERNEL_DIED"], ran.events
    assert outputs[4][0]["text"] == "after\n", outputs[4]
    assert not sandbox_processes()

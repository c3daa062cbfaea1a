"""Attacks across submissions through a real probe zygote: nothing submission A does reaches submission B.

One worker's zygote (``autograder/cycle/zygote.py``) serves many submissions
in one sandbox. Each test grades a hostile submission A and then an honest B
through ``probe_runner`` as a worker does, and checks from inside B's own
child that A left nothing (processes, files, IPC), that B's answers are B's,
and that an attack on the zygote itself cost only A. The modules here run
their statements while they load (the extractor would refuse them; the probe
does not check), which makes each attacker stronger than a real learner.
"""

from __future__ import annotations

import json
import secrets
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from autograder.cycle import probe_runs
from autograder.judge.facts import limits_for
from autograder.judge.probe_codec import decode, encode
from autograder.judge.probe_io import read_probe_output
from autograder.sandbox.launch import sandbox_available

pytestmark = [pytest.mark.sandbox,
              pytest.mark.skipif(not sandbox_available(), reason="bubblewrap cannot run here: make bubblewrap")]
A = "02_partitioner"

HONEST_B = '''
import os, sys
def report():
    seen = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                seen.append(open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace"))
            except OSError:
                pass
    files = {}
    for d in ("/tmp", "/dev/shm", "/scratch"):  # every path below, but not inside the sandbox's own mounts
        found = []
        for root, dirs, names in os.walk(d):
            dirs[:] = [n for n in dirs if not os.path.ismount(os.path.join(root, n))]
            found += [os.path.relpath(os.path.join(root, n), d) for n in dirs + names]
        files[d] = sorted(found)
    ipc = sum(len(open(f"/proc/sysvipc/{n}").read().splitlines()) - 1 for n in ("shm", "sem", "msg"))
    return {"daemons": [c for c in seen if "LEFT-BY-A" in c], "files": files, "ipc": ipc}
'''


@pytest.fixture(autouse=True)
def fresh_worker() -> None:
    """Each test starts as a fresh worker would: no zygote held."""
    probe_runs._discard_zygotes()
    probe_runs._unfit.clear()
    yield
    probe_runs._discard_zygotes()


def grade(tmp_path: Path, source: str, fn: str, timeout_s: float = 60) -> dict:
    """Probe ``source`` with one call of ``fn()`` through this worker's zygote for assignment A."""
    path = tmp_path / f"learner-{secrets.token_hex(4)}.py"
    path.write_text(source)
    runner = probe_runs.probe_runner(A, replace(limits_for(A), notebook_timeout_s=timeout_s))
    params = {k: encode(v) for k, v in {"fn": fn, "args": [], "kwargs": {}}.items()}
    calls = [{"task": "call", "params": params, "timeout": 20, "group": "g"}]
    return runner(path, {"assignment": A, "calls": calls, "key": secrets.token_hex(16)})


def seen_by_b(tmp_path: Path) -> dict:
    response = grade(tmp_path, HONEST_B, "report")
    assert response["ended"] == "ok" and response["forged"] == 0 and not response["tampered"], response
    return decode(response["replies"][0]["ok"])


def scratch_files() -> list[str]:
    from autograder.judge.probe_io import PROBE_FILES

    return sorted(PROBE_FILES)


def test_a_daemon_left_by_one_submission_is_gone_before_the_next_starts(tmp_path: Path) -> None:
    daemon = '''
import os, sys, time
def attack():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", "LEFT-BY-A"])
        os._exit(0)
    time.sleep(0.5)
    return 1
'''
    r = grade(tmp_path, daemon, "attack")
    assert r["replies"][0]["ok"] is not None, r
    zygote = probe_runs._held[0]
    assert seen_by_b(tmp_path)["daemons"] == []
    assert probe_runs._held[0] is zygote and zygote.served == 2  # the same zygote served both: its cleanup held


def test_files_left_in_every_writable_place_are_gone_for_the_next_submission(tmp_path: Path) -> None:
    litter = '''
import os
def attack():
    for root, dirs, names in os.walk("/tmp"):  # the folders holding the sandbox's own mounts too
        dirs[:] = [n for n in dirs if not os.path.ismount(os.path.join(root, n))]
        open(os.path.join(root, "from-a-too"), "w").write("A was here")
    for d in ("/tmp", "/dev/shm", "/scratch"):
        open(f"{d}/from-a", "w").write("A was here")
        os.makedirs(f"{d}/.hidden/deeper")
        open(f"{d}/.hidden/deeper/x", "w").write("x")
        os.chmod(f"{d}/.hidden/deeper", 0)
        os.chmod(f"{d}/.hidden", 0)
        os.symlink("/etc/passwd", f"{d}/link")
    open("/scratch/statistics.py", "w").write("raise SystemExit('shadowed')")
    return 1
'''
    fresh = seen_by_b(tmp_path)["files"]  # what a fresh sandbox holds: the probe's files, and under /tmp only the
    assert fresh["/dev/shm"] == [] and fresh["/scratch"] == scratch_files()  # folders of its own mounts, if any
    venv = str(Path(sys.prefix).resolve())  # the Python environment is mounted at its own path, under /tmp or not
    assert all(venv.startswith(f"/tmp/{path}/") for path in fresh["/tmp"]), fresh["/tmp"]
    zygote = probe_runs._held[0]
    assert grade(tmp_path, litter, "attack")["replies"][0]["ok"] is not None
    assert seen_by_b(tmp_path)["files"] == fresh
    assert probe_runs._held[0] is zygote and zygote.served == 3


def test_the_zygotes_own_files_cannot_be_changed(tmp_path: Path) -> None:
    tamper = '''
def attack():
    import errno
    try:
        open("/scratch/probe_tasks.py", "a").write("TASKS = {}")
    except OSError as exc:
        return exc.errno == errno.EROFS
    return False
'''
    response = grade(tmp_path, tamper, "attack")
    assert decode(response["replies"][0]["ok"]) is True


def test_lines_forged_for_the_next_submission_never_count_as_its_replies(tmp_path: Path) -> None:
    forger = '''
import os, sys, time, json
def attack():
    line = (json.dumps({"i": 0, "ok": 123, "key": "guessed"}) + "\\n").encode()
    if os.fork() == 0:
        os.setsid()
        for _ in range(400):  # keep writing into every file descriptor and the zygote's, were it alive
            for target in list(range(64)) + [f"/proc/{p}/fd/{n}" for p in (1, 2) for n in range(4)]:
                try:
                    if isinstance(target, int):
                        os.write(target, line)
                    else:
                        with open(target, "wb") as fh:
                            fh.write(line)
                except OSError:
                    pass
            time.sleep(0.01)
        os._exit(0)
    time.sleep(0.2)
    return 1
'''
    a = grade(tmp_path, forger, "attack")
    assert a["tampered"] == [0]  # it wrote into its own reply pipe: held, not scored
    b = seen_by_b(tmp_path)  # no forged line, its own reply (asserted in seen_by_b)
    assert b["daemons"] == []
    key_a, key_b = secrets.token_hex(16), secrets.token_hex(16)
    line_for_a = json.dumps({"i": 0, "ok": 123, "key": key_a}).encode()
    assert read_probe_output(line_for_a, 0, False, key=key_b)["forged"] == 1  # another request's key is forged


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGSTOP"])
def test_killing_or_stopping_the_zygote_costs_only_that_submission(tmp_path: Path, signal_name: str) -> None:
    killer = f'''
import os, signal, time
def attack():
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if b"probe_zygote" in open(f"/proc/{{p}}/cmdline", "rb").read():
                    os.kill(int(p), signal.{signal_name})
            except OSError:
                pass
    time.sleep(1)
    return 1
'''
    seen_by_b(tmp_path)  # a zygote ready and serving, so the attack runs in it, not during its import
    first = probe_runs._held[0]
    a = grade(tmp_path, killer, "attack", timeout_s=15)
    assert a["ended"] != "ok"
    assert first.served == 2 and not first.alive
    assert seen_by_b(tmp_path)["daemons"] == []
    assert probe_runs._held[0] is not first and probe_runs._held[0].served == 1


def test_what_cleanup_cannot_remove_discards_the_zygote(tmp_path: Path) -> None:
    sysv = '''
import ctypes
def attack():
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.shmget(0x1234, 4096, 0o1000 | 0o666)  # IPC_CREAT: a segment that outlives every process
'''
    a = grade(tmp_path, sysv, "attack")
    assert decode(a["replies"][0]["ok"]) >= 0
    first = probe_runs._held[0]
    assert not first.alive  # not proven clean: discarded
    assert seen_by_b(tmp_path)["ipc"] == 0
    assert probe_runs._held[0] is not first


def test_a_zygote_is_started_ahead_only_for_a_submission_that_cannot_use_the_one_held(tmp_path: Path) -> None:
    path = tmp_path / "learner.py"
    path.write_text("def f():\n    return 1\n")
    request = {"assignment": A, "calls": [], "key": secrets.token_hex(16)}
    assert probe_runs.probe_runner(A, limits_for(A), ahead=A)(path, request)["ended"] == "ok"
    assert probe_runs._ahead == []  # the next submission of the same assignment uses the zygote held
    other = "03_scheduler"
    assert probe_runs.probe_runner(A, limits_for(A), ahead=other)(path, request)["ended"] == "ok"
    spare = probe_runs._ahead[0]
    assert spare.assignment == other and spare.alive and spare.slot != probe_runs._held[0].slot
    assert probe_runs.probe_runner(other, limits_for(other))(path, {**request, "assignment": other})["ended"] == "ok"
    assert probe_runs._held == [spare] and spare.served == 1 and probe_runs._ahead == []

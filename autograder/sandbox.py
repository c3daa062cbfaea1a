"""Run a learner's code where it can harm nothing but its own result: a bubblewrap sandbox.

A learner's notebook is untrusted code. Run as the instructor, inside the
repository, it could read ``solutions/``, rewrite the gradebook, kill a
classmate's kernel or leave a process behind that edits ``grades.csv`` later.
:func:`run_sandboxed` runs a command so that none of that is possible:

* bubblewrap (Debian package ``bubblewrap``, ``make bubblewrap``) gives it new
  PID, network, mount, user, IPC and UTS namespaces. It sees a read-only
  ``/usr`` and ``/etc``, the read-only Python environment, a read-only
  *grading view* of ``gpipe_core`` at ``/grading`` (``PYTHONPATH``) and a
  small tmpfs ``/scratch`` (its working directory) in which only the files of
  the host ``scratch`` folder appear. No repository, no ``solutions/``, no
  ``instructor/``, no other submission, no network.
* It runs under its own uid (one per sandbox, outside any real account), so
  even a process that escaped the namespaces would own nothing of the grader's.
  When the grader runs as root, a small trusted helper (this file run as a
  script) first binds every path the sandbox needs into a private staging
  tmpfs, because the sandbox uid cannot walk into ``/root`` or a 0700 temp dir.
* Its whole process tree is limited: memory and task count by a cgroup
  (:mod:`autograder.treelimits`) where the grader may create one, and always
  per process by ``RLIMIT_AS``/``RLIMIT_NPROC`` (the latter counts the
  sandbox's own uid, so the total is bounded even without cgroups), plus
  ``RLIMIT_CPU``, ``RLIMIT_FSIZE``, a size on every writable place
  (:func:`writable`; all else is read-only) and byte caps on what it prints.
  When the command ends or times out, everything it started dies with it
  (``--die-with-parent``, PID namespace), and any process still owned by its
  uid is killed and reported.

:func:`sandbox_available` says whether bubblewrap works here. Without it the
grader can run with ``--no-sandbox`` (README.md, "Grading without the
sandbox"): limits still apply, isolation is lost.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .limits import Limits
from .treelimits import TreeLimits

GRADING_VIEW = "/grading"  # where the view of gpipe_core is mounted; on PYTHONPATH inside
SCRATCH = "/scratch"  # the sandbox's working directory (tmpfs)
UID_BASE = 1_000_000  # sandbox uids: the base + the grading process's pid, never a real account
UID_SPAN = 1 << 22  # Linux pids stay below this (pid_max), so one base's uids never meet another's
UID_ENV = "GPIPE_SANDBOX_UID_BASE"  # another base, e.g. for tests that must tell their sandboxes from others'


def uid_base() -> int:
    """The first sandbox uid; uids stay below 2**31, the most bubblewrap's uid map accepts."""
    base = int(os.environ.get(UID_ENV, UID_BASE))
    if not 0 < base <= 2**31 - UID_SPAN:
        raise ValueError(f"{UID_ENV}={base} must be between 1 and {2**31 - UID_SPAN} (bwrap maps uids below 2**31)")
    return base
INNER_UID = 1000  # the uid the learner's code sees


@dataclass(frozen=True)
class SandboxResult:
    returncode: int
    stdout: bytes  # at most limits.output_bytes_notebook
    stderr: bytes  # idem
    timed_out: bool
    killed_reason: str | None  # why the sandbox was stopped or limited, for the log line; None if it was not


class SandboxUnavailable(RuntimeError):
    pass


@functools.lru_cache(maxsize=1)
def sandbox_available() -> bool:
    """True if bubblewrap can start a sandbox here (installed, and namespaces allowed)."""
    if not shutil.which("bwrap"):
        return False
    with tempfile.TemporaryDirectory() as scratch:
        try:
            result = run_sandboxed(["/bin/true"], scratch=Path(scratch), limits=Limits(), view=None, timeout=30)
        except (OSError, SandboxUnavailable):
            return False
    return result.returncode == 0


def _python_paths() -> list[str]:
    """The folders the Python environment lives in (venv, base install, the interpreter's own dir)."""
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    out: list[str] = []
    for p in sorted(paths, key=len):  # drop folders inside one already listed
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


def _mounts(scratch: Path, view: Path | None) -> list[tuple[str, str, str]]:
    """(kind, source, dest) for every host path the sandbox sees; kind is 'ro' or 'rw'."""
    mounts = [("ro", "/usr", "/usr"), ("ro", "/etc", "/etc")]
    mounts += [("ro", p, p) for p in _python_paths()]
    if view is not None:
        mounts.append(("ro", str(Path(view).resolve()), GRADING_VIEW))
    for f in sorted(Path(scratch).iterdir()):
        if f.is_symlink() or not f.is_file():
            raise ValueError(f"scratch may hold regular files only, not {f}")
        mounts.append(("rw", str(f.resolve()), f"{SCRATCH}/{f.name}"))
    return mounts


def writable(limits: Limits) -> dict[str, int]:
    """Every place in the sandbox a file can be created in, and its size in bytes: ``scratch_mb`` in all."""
    total = limits.scratch_mb << 20  # /dev/shm: POSIX shared memory and semaphores (multiprocessing, torch)
    return {SCRATCH: total // 2, "/tmp": total // 4, "/dev/shm": total // 4}


def _bwrap_args(mounts: list[tuple[str, str, str]], limits: Limits) -> list[str]:
    args = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--uid", str(INNER_UID), "--gid", str(INNER_UID),
            "--die-with-parent", "--new-session", "--proc", "/proc", "--dev", "/dev"]
    args += [a for place, size in writable(limits).items() for a in ("--size", str(size), "--tmpfs", place)]
    args += ["--remount-ro", "/dev", "--chdir", SCRATCH, "--clearenv"]  # not recursive: /dev/shm stays writable
    for name in ("bin", "lib", "lib64", "sbin"):
        target = f"/{name}"
        if os.path.islink(target):
            args += ["--symlink", os.readlink(target), target]
        elif os.path.isdir(target):
            args += ["--ro-bind", target, target]
    for kind, src, dest in mounts:
        args += ["--ro-bind" if kind == "ro" else "--bind", src, dest]
    return [*args, "--remount-ro", "/"]  # last: bwrap's own root tmpfs has no size, and it made folders in it


def _environment(limits: Limits, extra: dict[str, str] | None) -> list[str]:
    env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin", "HOME": SCRATCH, "LANG": "C.UTF-8",
           "PYTHONPATH": GRADING_VIEW, "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(limits.threads), "MKL_NUM_THREADS": str(limits.threads),
           "JUPYTER_PLATFORM_DIRS": "1", **(extra or {})}
    return [a for k, v in env.items() for a in ("--setenv", k, v)]


def run_sandboxed(argv: list[str], *, scratch: Path, limits: Limits, view: Path | None, timeout: float,
                  stdin: bytes | None = None, env: dict[str, str] | None = None, isolate: bool = True) -> SandboxResult:
    """Run ``argv`` in a fresh sandbox whose working directory ``/scratch`` shows the files of ``scratch``.

    Only the regular files present in ``scratch`` when this is called appear in the sandbox, writable (so a
    command can write its answer into a file the caller created empty; ``RLIMIT_FSIZE`` caps them); files it
    creates itself live in the sandbox's capped tmpfs places (:func:`writable`) and vanish with it. ``view`` (a
    folder holding the ``gpipe_core`` package to import, or None) is mounted read-only on ``PYTHONPATH``.
    Returns when every process of the sandbox has ended.

    ``isolate=False`` is the ``--no-sandbox`` fallback: the same limits, environment and output caps, but no
    namespaces and no uid of its own; the command runs in ``scratch`` itself as the grader's user (README.md
    says what is lost).
    """
    if not isolate:
        return _run_plain(argv, scratch=Path(scratch), limits=limits, view=view, timeout=timeout, stdin=stdin,
                          env=env)
    if not shutil.which("bwrap"):
        raise SandboxUnavailable("bubblewrap is not installed: run `make bubblewrap` (Debian package "
                                 "bubblewrap), or grade with --no-sandbox (autograder/README.md)")
    uid = uid_base() + os.getpid()
    scratch = Path(scratch)
    if view is not None:
        _readable(Path(view).resolve())
    for f in scratch.iterdir():  # the sandbox uid must be able to write the files it is given
        if f.is_file() and not f.is_symlink() and os.geteuid() == 0:
            os.chown(f, uid, uid)
    spec = {"mounts": _mounts(scratch, view), "uid": uid, "limits": limits.__dict__, "bwrap": None, "argv": list(argv)}
    spec["bwrap"] = _bwrap_args(spec["mounts"], limits) + _environment(limits, env)
    tree = TreeLimits.create(f"gpipe-{uid}-{time.monotonic_ns()}", limits)
    try:
        helper = [sys.executable, "-S", "-I", str(Path(__file__).with_name("sandbox_helper.py")),
                  json.dumps(spec), *tree.join_args()]
        return _supervise(helper, stdin, timeout, limits, tree, uid)
    finally:
        tree.remove()


def _run_plain(argv: list[str], *, scratch: Path, limits: Limits, view: Path | None, timeout: float,
               stdin: bytes | None, env: dict[str, str] | None) -> SandboxResult:
    pairs = _environment(limits, env)
    variables = dict(zip(pairs[1::3], pairs[2::3]))
    variables.update(HOME=str(scratch.resolve()), PYTHONPATH=str(Path(view).resolve()) if view else "")
    spec = {"plain": True, "cwd": str(scratch.resolve()), "env": variables, "limits": limits.__dict__,
            "argv": list(argv)}
    tree = TreeLimits.create(f"gpipe-plain-{os.getpid()}-{time.monotonic_ns()}", limits)
    try:
        helper = [sys.executable, "-S", "-I", str(Path(__file__).with_name("sandbox_helper.py")),
                  json.dumps(spec), *tree.join_args()]
        return _supervise(helper, stdin, timeout, limits, tree, None)
    finally:
        tree.remove()


@functools.lru_cache(maxsize=64)
def _readable(root: Path) -> None:
    """Let the sandbox's uid read the view (it is built in a private temp folder); once per folder."""
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def _supervise(helper: list[str], stdin: bytes | None, timeout: float, limits: Limits, tree: TreeLimits,
               uid: int | None) -> SandboxResult:
    proc = subprocess.Popen(helper, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    cap = limits.output_bytes_notebook
    out, err = bytearray(), bytearray()
    readers = [threading.Thread(target=_drain, args=(pipe, buf, cap), daemon=True)
               for pipe, buf in ((proc.stdout, out), (proc.stderr, err))]
    for r in readers:
        r.start()
    if stdin is not None:
        threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()  # bwrap; its init dies with it (--die-with-parent) and takes the PID namespace along
        if uid is None:  # no PID namespace: the process group of the unsandboxed command
            _kill_group(proc.pid)
        proc.wait()
    for r in readers:
        r.join(timeout=5)
    reasons = [f"ran longer than {timeout:g} s and was stopped"] if timed_out else []
    reasons += tree.events()
    leftover = (_kill_uid(uid) if uid is not None else _kill_group(proc.pid)) + tree.kill_all()
    if leftover:
        reasons.append(f"{leftover} process(es) still running after the sandbox ended were killed")
    if len(out) >= cap or len(err) >= cap:
        reasons.append(f"output beyond {cap} bytes was cut")
    return SandboxResult(proc.returncode, bytes(out), bytes(err), timed_out, "; ".join(reasons) or None)


def _drain(pipe, buf: bytearray, cap: int) -> None:  # noqa: ANN001 - a binary pipe
    while chunk := pipe.read1(65536) if hasattr(pipe, "read1") else pipe.read(65536):
        if len(buf) < cap:
            buf += chunk[:cap - len(buf)]


def _feed(pipe, data: bytes) -> None:  # noqa: ANN001 - a binary pipe
    try:
        pipe.write(data)
        pipe.close()
    except OSError:
        pass


def _kill_group(pgid: int) -> int:
    """SIGKILL what is left of an unsandboxed command's process group (a new session escapes it: see README)."""
    try:
        os.killpg(pgid, 9)
        return 1
    except OSError:
        return 0


def _uid_processes(uid: int) -> set[int]:
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(ln.split(":", 1) for ln in status.read_text().splitlines() if ":" in ln)
        except (OSError, ValueError):
            continue
        if fields.get("Uid", "").split()[:1] == [str(uid)] and not fields.get("State", "").strip().startswith("Z"):
            found.add(int(status.parent.name))
    return found


def _kill_uid(uid: int, grace: float = 2.0) -> int:
    """SIGKILL every live process whose real uid is ``uid``; returns how many outlived ``grace`` seconds.

    When the sandbox's init ends, the kernel kills the rest of its PID namespace;
    that takes a moment, so only processes still there after ``grace`` count.
    """
    deadline = time.monotonic() + grace
    while (found := _uid_processes(uid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed: set[int] = set()
    for _ in range(50):
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        killed |= found
        time.sleep(0.02)
        found = _uid_processes(uid)
    return len(killed)

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
  (:mod:`autograder.sandbox.treelimits`) where the grader may create one, and always
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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .limits import Limits
from .supervise import SandboxResult, Started
from .treelimits import TreeLimits

GRADING_VIEW = "/grading"  # where the view of gpipe_core is mounted; on PYTHONPATH inside
SCRATCH = "/scratch"  # the sandbox's working directory (tmpfs)
UID_BASE = 1_000_000  # sandbox uids: the base + 2 x the grading process's pid + its slot, never a real account
UID_SPAN = 1 << 23  # Linux pids stay below 2**22 (pid_max), two slots each: one base's uids never meet another's
UID_ENV = "GPIPE_SANDBOX_UID_BASE"  # another base, e.g. for tests that must tell their sandboxes from others'


def uid_base() -> int:
    """The first sandbox uid; uids stay below 2**31, the most bubblewrap's uid map accepts."""
    base = int(os.environ.get(UID_ENV, UID_BASE))
    if not 0 < base <= 2**31 - UID_SPAN:
        raise ValueError(f"{UID_ENV}={base} must be between 1 and {2**31 - UID_SPAN} (bwrap maps uids below 2**31)")
    return base
INNER_UID = 1000  # the uid the learner's code sees


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


def _mounts(scratch: Path, view: Path | None, read_only: bool = False) -> list[tuple[str, str, str]]:
    """(kind, source, dest) for every host path the sandbox sees; kind is 'ro' or 'rw'."""
    mounts = [("ro", "/usr", "/usr"), ("ro", "/etc", "/etc")]
    mounts += [("ro", p, p) for p in _python_paths()]
    if view is not None:
        mounts.append(("ro", str(Path(view).resolve()), GRADING_VIEW))
    for f in sorted(Path(scratch).iterdir()):
        if f.is_symlink() or not f.is_file():
            raise ValueError(f"scratch may hold regular files only, not {f}")
        mounts.append(("ro" if read_only else "rw", str(f.resolve()), f"{SCRATCH}/{f.name}"))
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
    started = start_sandboxed(argv, scratch=scratch, limits=limits, view=view, env=env, isolate=isolate)
    return started.finish(stdin, timeout)


def start_sandboxed(argv: list[str], *, scratch: Path, limits: Limits, view: Path | None,
                    env: dict[str, str] | None = None, isolate: bool = True, cleanup: Any = None,
                    slot: int = 0, read_only: bool = False, stream: bool = False) -> Started:
    """Start ``argv`` as :func:`run_sandboxed` would and return at once; ``finish(stdin, timeout)`` ends it.

    The command waits for its standard input; its time limit counts from ``finish``. ``cleanup`` (no
    arguments) runs once the sandbox is gone, e.g. to delete ``scratch``. A grading process may hold two
    sandboxes at once, in slots 0 and 1: each slot has a uid of its own, so ending one (which kills every
    process left under its uid) never touches the other. ``read_only``: the scratch files are mounted
    read-only (a probe zygote's own code, which one submission must not change for the next); ``stream``:
    stdout is left for the caller to read as it comes (``Started.proc.stdout``) instead of collected.
    """
    if slot not in (0, 1):
        raise ValueError(f"slot must be 0 or 1, not {slot!r}: a grading process has two sandbox uids")
    scratch = Path(scratch)
    if not isolate:
        pairs = _environment(limits, env)
        variables = dict(zip(pairs[1::3], pairs[2::3]))
        variables.update(HOME=str(scratch.resolve()), PYTHONPATH=str(Path(view).resolve()) if view else "")
        spec: dict[str, Any] = {"plain": True, "cwd": str(scratch.resolve()), "env": variables,
                                "limits": limits.__dict__, "argv": list(argv)}
        uid, name = None, f"gpipe-plain-{os.getpid()}-{time.monotonic_ns()}"
    else:
        if not shutil.which("bwrap"):
            raise SandboxUnavailable("bubblewrap is not installed: run `make bubblewrap` (Debian package "
                                     "bubblewrap), or grade with --no-sandbox (autograder/README.md)")
        uid = uid_base() + 2 * os.getpid() + slot
        if view is not None:
            _readable(Path(view).resolve())
        for f in scratch.iterdir():  # the sandbox uid must be able to write the files it is given
            if f.is_file() and not f.is_symlink() and os.geteuid() == 0:
                os.chown(f, uid, uid)
        spec = {"mounts": _mounts(scratch, view, read_only), "uid": uid, "limits": limits.__dict__, "bwrap": None,
                "argv": list(argv)}
        spec["bwrap"] = _bwrap_args(spec["mounts"], limits) + _environment(limits, env)
        name = f"gpipe-{uid}-{time.monotonic_ns()}"
    tree = TreeLimits.create(name, limits)
    helper = [sys.executable, "-S", "-I", str(Path(__file__).with_name("helper.py")),
              json.dumps(spec), *tree.join_args()]
    try:
        return Started(helper, limits, tree, uid, cleanup, stream)
    except BaseException:
        tree.remove()
        raise


@functools.lru_cache(maxsize=64)
def _readable(root: Path) -> None:
    """Let the sandbox's uid read the view (it is built in a private temp folder); once per folder."""
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)

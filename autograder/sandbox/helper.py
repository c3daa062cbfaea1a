"""The trusted first step of every sandbox: join the cgroups, stage the mounts, set limits, drop root, exec bwrap.

Run by :func:`autograder.sandbox.launch.run_sandboxed` as ``python -S -I
sandbox_helper.py SPEC [CGROUP_PROCS_FILE ...]`` (standard library only, so it
starts in milliseconds). It does, in this order, in one fresh process:

1. writes its own pid into the cgroups' ``cgroup.procs`` files it is given, so
   the memory and task limits hold for every process the sandbox will start;
2. when running as root: enters a private mount namespace and binds every host
   path the sandbox needs onto a fresh tmpfs (mode 755). The sandbox runs
   under an unprivileged uid that could not walk into ``/root`` (where pyenv
   keeps Python) or a 0700 temp folder; the staged copies are the same files,
   reachable. Nothing of this is visible outside this process tree;
3. sets the per-process limits (``RLIMIT_AS``, ``RLIMIT_CPU``, ``RLIMIT_FSIZE``,
   ``RLIMIT_NPROC``, no core dumps) that the sandbox inherits;
4. as root, becomes the sandbox's own uid with no groups and no capabilities;
5. ``exec``s bubblewrap, which builds the namespaces and runs the command.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18
STAGE = "/tmp"  # covered by a private tmpfs in this process's own mount namespace only


def _libc_call(name: str, *args: object) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}{args!r}: {os.strerror(err)}")


def _mount(src: str | None, dest: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [None if x is None else x.encode() for x in (src, dest, fstype, data)]
    _libc_call("mount", enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3])


def stage(mounts: list[list[str]]) -> list[list[str]]:
    """Bind each source onto a fresh tmpfs in a private mount namespace; returns the mounts with staged sources."""
    _libc_call("unshare", CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    fds = [os.open(src, os.O_PATH) for _, src, _ in mounts]  # opened before /tmp is covered
    _mount("gpipe-stage", STAGE, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
    staged = []
    for i, ((kind, _, dest), fd) in enumerate(zip(mounts, fds)):
        target = f"{STAGE}/{i}"
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.mkdir(target)
        else:
            open(target, "w").close()
        _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        os.close(fd)
        staged.append([kind, target, dest])
    return staged


def set_limits(limits: dict[str, int], own_uid: bool) -> None:
    """The per-process limits; the task limit only when the sandbox gets a uid of its own (it counts per uid)."""
    mb = 2**20
    wanted = {resource.RLIMIT_CORE: 0, resource.RLIMIT_FSIZE: limits["file_mb"] * mb,
              resource.RLIMIT_CPU: limits["cpu_s"]}
    if own_uid:
        wanted[resource.RLIMIT_NPROC] = limits["processes"]
    if limits["memory_mb"] > 0:
        wanted[resource.RLIMIT_AS] = limits["memory_mb"] * mb
    for which, value in wanted.items():
        resource.setrlimit(which, (value, value))


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    for procs in argv[1:]:
        with open(procs, "w") as fh:
            fh.write(str(os.getpid()))
    if spec.get("plain"):  # --no-sandbox: limits only
        set_limits(spec["limits"], own_uid=False)
        os.chdir(spec["cwd"])
        os.execve(spec["argv"][0], spec["argv"], spec["env"])
    bwrap: list[str] = spec["bwrap"]
    root = os.geteuid() == 0
    if root:
        staged = stage(spec["mounts"])
        for (_, src, dest), (_, new, _) in zip(spec["mounts"], staged):
            for i in range(len(bwrap) - 2):
                if bwrap[i] in ("--ro-bind", "--bind") and bwrap[i + 1] == src and bwrap[i + 2] == dest:
                    bwrap[i + 1] = new
    set_limits(spec["limits"], own_uid=root)
    if root:
        uid = spec["uid"]
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from root to an unprivileged uid: every capability is dropped too
    os.execv(bwrap[0], [*bwrap, "--", *spec["argv"]])  # an absolute path: nothing left to import


if __name__ == "__main__":
    main(sys.argv[1:])

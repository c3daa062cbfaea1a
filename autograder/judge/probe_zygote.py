"""The probe's zygote: one sandbox that imports torch once and serves many submissions, each in a fresh child.

Starting a sandboxed harness costs about two seconds of CPU (torch, the
grading view, the warm-up), most of what a submission costs. Run as ``python
probe_zygote.py`` as the sandbox's first process, this harness pays that
once, then reads requests from the worker, one at a time, and for each forks
a *submission child* that does exactly what ``probe.py`` does for one
submission (task children, per-call deadlines, keyed lines).

Nothing of one submission may reach the next, so between two submissions
the zygote, which never runs learner code:

* kills every other process of the sandbox (``kill(-1, SIGKILL)``, repeated
  until ``/proc`` lists only bwrap's init and itself): daemons, new sessions
  and stopped processes included;
* empties every writable place (``/tmp``, ``/dev/shm``, ``/scratch`` but for
  its own read-only files), and checks that nothing is left there, no SysV IPC
  object exists (POSIX message queues cannot be made: ``RLIMIT_MSGQUEUE`` is
  0), the kernel's key list is as it was, its own files are unchanged and it
  maps no writable shared memory (a forked child would share it).

If any of that cannot be proven, it says so and exits: the worker starts a
fresh sandbox. The submission child closes the zygote's request and reply
channels right after ``fork``; its output reaches the worker only through
pipes the zygote relays in frames (``Z <kind> <size>\\n`` + bytes; kinds
``R`` ready, ``O`` the child's keyed output, ``E`` its stderr, ``D`` done
with the child's status and whether the sandbox is clean). The zygote is not
dumpable, and it refuses to start outside a PID namespace, where
``kill(-1)`` would reach the grader's own processes.
"""

from __future__ import annotations

import json
import os
import re
import resource
import select
import signal
import stat
import sys
import time

import probe  # a sibling in the sandbox's scratch, like the rest of the probe

WRITABLE = ("/tmp", "/dev/shm", "/scratch")
SCRATCH = "/scratch"
KILL_GRACE_S = 5.0  # how long every other process gets to vanish before the sandbox counts as unclean


def frame(channel: int, kind: str, data: bytes) -> None:
    """One frame on the worker's channel (the zygote alone holds it)."""
    view = memoryview(b"Z %s %d\n" % (kind.encode(), len(data)) + data)
    while view:
        view = view[os.write(channel, view):]


def read_request(commands: int) -> dict | None:
    """The next request (``<size>\\n<json>`` on the command channel), or None once the worker closed it."""
    head = b""
    while not head.endswith(b"\n"):
        byte = os.read(commands, 1)
        if not byte:
            return None
        head += byte
    size, body = int(head), bytearray()
    while len(body) < size:
        chunk = os.read(commands, size - len(body))
        if not chunk:
            return None
        body += chunk
    return json.loads(body)


def others() -> list[int]:
    """Every process of the sandbox but bwrap's init (pid 1) and this one."""
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]


def kill_the_rest() -> bool:
    """SIGKILL every other process until none is listed; False if one outlived the grace."""
    deadline = time.monotonic() + KILL_GRACE_S
    while True:
        try:
            os.kill(-1, signal.SIGKILL)  # every process this uid may signal but init and the caller
        except (ProcessLookupError, PermissionError):  # none left to signal; one it may not: caught below
            pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        if not others():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def mounted_inside() -> frozenset[str]:
    """The sandbox's own mounts inside a writable place, and the folders bwrap made to hold them: read-only
    binds (the Python environment when it lives under /tmp, say), never removed, never listed as left over.
    Read once, before any learner code: a learner cannot mount (no capability)."""
    fixed: set[str] = set()
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            for folder in WRITABLE:
                if point.startswith(folder + "/"):
                    while point != folder:
                        fixed.add(point)
                        point = os.path.dirname(point)
    return frozenset(fixed)


def empty(folder: str, keep: frozenset[str], fixed: frozenset[str] = frozenset()) -> None:
    """Remove everything in ``folder`` but ``keep`` (names) and the sandbox's own mounts and the folders holding
    them (``fixed``, paths: only what else is in those is removed); folders made unreadable are opened first."""
    for entry in os.scandir(folder):
        if entry.name in keep:
            continue
        path = entry.path
        if path in fixed:
            if not os.path.ismount(path):
                empty(path, frozenset(), fixed)
            continue
        if entry.is_dir(follow_symlinks=False):
            os.chmod(path, 0o700)
            empty(path, frozenset(), fixed)
            os.rmdir(path)
        else:
            os.unlink(path)


def left_over(folder: str, keep: frozenset[str], fixed: frozenset[str]) -> list[str]:
    """What is in ``folder`` beyond ``keep`` and the sandbox's own mounts (inside the folders holding them too)."""
    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name in keep:
            continue
        if path not in fixed:
            found.append(path)
        elif not os.path.ismount(path):
            found.extend(left_over(path, frozenset(), fixed))
    return found


def snapshot(keep: frozenset[str], fixed: frozenset[str] = frozenset()) -> dict:
    """What must be the same after every submission: the zygote's own files, the sandbox's own mounts inside
    writable places and the folders holding them (a changed mode or a folder put in their place would reach the
    next submission), the kernel's keys."""
    files = {}
    for path in sorted({os.path.join(SCRATCH, name) for name in keep} | fixed):
        st = os.lstat(path)
        files[path] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns if path not in fixed else 0,
                       stat.S_IMODE(st.st_mode), st.st_uid)
    with open("/proc/key-users") as fh:
        keys = fh.read()
    with open("/proc/self/maps") as fh:  # memory a forked child would share with the zygote, writable
        shared = [line for line in fh if line.split()[1][1::2] == "ws"]
    return {"files": files, "keys": keys, "shared": shared}


def sysv_objects() -> int:
    """SysV shared memory segments, semaphore sets and message queues in the sandbox's IPC namespace."""
    count = 0
    for name in ("shm", "sem", "msg"):
        with open(f"/proc/sysvipc/{name}") as fh:
            count += len(fh.read().splitlines()[1:])
    return count


def clean_up(keep: frozenset[str], before: dict, fixed: frozenset[str] = frozenset()) -> str | None:
    """Make the sandbox as it was before the submission; None if proven, else why it is not."""
    if not kill_the_rest():
        return f"processes outlived SIGKILL: {others()}"
    try:
        for folder in WRITABLE:
            empty(folder, keep if folder == SCRATCH else frozenset(), fixed)
        left = {f: left_over(f, keep if f == SCRATCH else frozenset(), fixed) for f in WRITABLE}
        now = snapshot(keep, fixed)
    except OSError as exc:
        return f"a file could not be removed: {exc}"
    if any(left.values()):
        return f"files are left: {left}"
    if sysv_objects():
        return "SysV IPC objects are left"
    if now != before:
        return "the zygote's files, the sandbox's own mounts or the kernel's keys changed"
    return None


def submission(request: dict, commands: int, channel: int) -> tuple[int, int, int]:
    """Fork the submission child; returns (pid, its output pipe, its stderr pipe) for the zygote to read."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:  # no way back to the zygote's channels: only the pipes of this submission
            for fd in (commands, channel, out_r, err_r):
                os.close(fd)
            os.dup2(err_w, 1)
            os.dup2(err_w, 2)
            os.close(err_w)
            out = os.fdopen(out_w, "w", encoding="utf-8")
            probe.answer(request, str(request.get("source", "")), out, warmed=True)
            out.close()
        finally:
            os._exit(0)
    os.close(out_w)
    os.close(err_w)
    return pid, out_r, err_r


def relay(pid: int, pipes: dict[int, str], channel: int) -> int:
    """Forward the child's pipes as frames until it has exited; returns its wait status."""
    live = set(pipes)
    while True:
        ready, _, _ = select.select(list(live), [], [], 0.2) if live else ([], [], [])
        for fd in ready:
            chunk = os.read(fd, 1 << 20)
            if chunk:
                frame(channel, pipes[fd], chunk)
            else:
                live.discard(fd)
        done, status = os.waitpid(pid, 0 if not live else os.WNOHANG)
        if done:
            return status


def drain(pipes: dict[int, str], channel: int) -> None:
    """What is left in the pipes once every writer is dead (so each ends)."""
    for fd, kind in pipes.items():
        os.set_blocking(fd, False)
        try:
            while chunk := os.read(fd, 1 << 20):
                frame(channel, kind, chunk)
        except BlockingIOError:
            pass
        os.close(fd)


def main() -> None:
    if os.getpid() > 16:  # bwrap's PID namespace starts us as pid 2; elsewhere kill(-1) would hit the grader
        sys.exit("probe_zygote.py runs only as the first process of a sandbox (a PID namespace of its own)")
    commands = os.dup(0)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    out = probe.start()  # kept: its file object owns the channel
    channel = out.fileno()
    probe.warm_up(set(probe.tasks.TASKS))
    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))
    keep = frozenset(os.listdir(SCRATCH))
    fixed = mounted_inside()
    before = snapshot(keep, fixed)
    unfit = clean_up(keep, before, fixed) or ("writable shared memory: " + " ".join(before["shared"])[:300]
                                       if before["shared"] else None)
    frame(channel, "R", json.dumps({"ready": time.time(), "unfit": unfit}).encode())
    if unfit:
        os._exit(3)
    while (request := read_request(commands)) is not None:
        pid, out_r, err_r = submission(request, commands, channel)
        pipes = {out_r: "O", err_r: "E"}
        status = relay(pid, pipes, channel)
        why = clean_up(keep, before, fixed)
        drain(pipes, channel)
        code = os.waitstatus_to_exitcode(status)
        frame(channel, "D", json.dumps({"returncode": code, "unclean": why}).encode())
        if why:
            os._exit(3)
    os._exit(0)


if __name__ == "__main__":
    main()

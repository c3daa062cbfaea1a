"""Memory and task limits on a sandbox's whole process tree, by cgroup, where the grader may create one.

``RLIMIT_AS`` limits one process: three children of a kernel held 4.5 GB
under a "4096 MB" limit. A cgroup limits the sum. :class:`TreeLimits` makes a
memory cgroup (``memory.limit_in_bytes``, or ``memory.max`` on cgroup v2) and
a pids cgroup (``pids.max``: processes and threads) for one sandbox; the
sandbox helper joins them before it starts bubblewrap, so every process of
the sandbox is counted. Afterwards :meth:`events` tells whether a limit was
hit (the log line says so), :meth:`kill_all` ends anything still inside and
:meth:`remove` deletes the groups.

Where no cgroup can be created (not root, no delegated cgroup v2 subtree)
:meth:`TreeLimits.create` returns an empty one and the per-process rlimits set
by the helper remain: ``RLIMIT_AS`` per process times ``RLIMIT_NPROC`` on the
sandbox's own uid still bounds the total (see README.md, "Threat model").
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .limits import Limits

ROOT = Path("/sys/fs/cgroup")
PARENT = "gpipe-sandbox"


@dataclass
class TreeLimits:
    kind: str = "none"  # "cgroup v1", "cgroup v2" or "none" (per-process rlimits only)
    groups: list[Path] = field(default_factory=list)  # memory group first, then pids (v1); one group (v2)

    @classmethod
    def create(cls, name: str, limits: Limits) -> TreeLimits:
        """Cgroups limiting ``limits.memory_mb`` and ``limits.processes`` for one sandbox; empty if not allowed."""
        for make in (_v2, _v1):
            try:
                made = make(name, limits)
            except OSError:
                continue
            if made is not None:
                return made
        return cls()

    def join_args(self) -> list[str]:
        return [str(g / "cgroup.procs") for g in self.groups]

    def events(self) -> list[str]:
        """Why the tree was limited: the memory limit killed a process, or the task limit refused a fork."""
        reasons = []
        if self.kind == "cgroup v2" and self.groups:
            memory = _counters(self.groups[0] / "memory.events")
            pids = _counters(self.groups[0] / "pids.events")
        elif self.kind == "cgroup v1":
            memory = _counters(self.groups[0] / "memory.oom_control")
            pids = _counters(self.groups[1] / "pids.events")
        else:
            return reasons
        if memory.get("oom_kill", 0):
            reasons.append(f"the memory limit killed {memory['oom_kill']} process(es)")
        if pids.get("max", 0):
            reasons.append(f"the process limit refused {pids['max']} new process(es) or thread(s)")
        return reasons

    def kill_all(self) -> int:
        """SIGKILL every process still in the groups; returns how many there were."""
        return kill_until_gone(lambda: {int(p) for g in self.groups for p in _read(g / "cgroup.procs").split()})


    def remove(self) -> None:
        self.kill_all()
        for g in self.groups:
            for _ in range(50):
                try:
                    g.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # busy until the last process is reaped
                    time.sleep(0.02)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _counters(path: Path) -> dict[str, int]:
    out = {}
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _v1(name: str, limits: Limits) -> TreeLimits | None:
    memory, pids = ROOT / "memory", ROOT / "pids"
    if not (os.access(memory, os.W_OK) and os.access(pids, os.W_OK)) or (ROOT / "cgroup.controllers").exists():
        return None
    groups = [memory / PARENT / name, pids / PARENT / name]
    for g in groups:
        g.mkdir(parents=True, exist_ok=True)
    made = TreeLimits("cgroup v1", groups)
    try:
        if limits.memory_mb > 0:
            (groups[0] / "memory.limit_in_bytes").write_text(str(limits.memory_mb << 20))
        (groups[1] / "pids.max").write_text(str(limits.processes))
    except OSError:
        made.remove()
        raise
    return made


def _v2(name: str, limits: Limits) -> TreeLimits | None:
    if not (ROOT / "cgroup.controllers").exists() or not os.access(ROOT, os.W_OK):
        return None
    parent = ROOT / PARENT
    parent.mkdir(exist_ok=True)
    for folder in (ROOT, parent):
        enabled = _read(folder / "cgroup.subtree_control").split()
        if not {"memory", "pids"} <= set(enabled):
            (folder / "cgroup.subtree_control").write_text("+memory +pids")
    group = parent / name
    group.mkdir(exist_ok=True)
    made = TreeLimits("cgroup v2", [group])
    try:
        if limits.memory_mb > 0:
            (group / "memory.max").write_text(str(limits.memory_mb << 20))
            if (group / "memory.swap.max").exists():
                (group / "memory.swap.max").write_text("0")
        (group / "pids.max").write_text(str(limits.processes))
    except OSError:
        made.remove()
        raise
    return made


def kill_until_gone(listing: Callable[[], set[int]], rounds: int = 50) -> int:
    """SIGKILL every process ``listing()`` names, and again until it names none (a fork can race the kill).

    Returns how many processes there were in all.
    """
    seen: set[int] = set()
    for _ in range(rounds):
        pids = listing()
        if not pids:
            break
        for pid in pids - seen:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        seen |= pids
        time.sleep(0.02)
    return len(seen)

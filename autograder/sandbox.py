"""Start a grading kernel under resource limits, then become it.

The grader's kernel manager launches ``python sandbox.py --memory-mb N -- <kernel command>``
instead of the kernel command itself. This script sets the limits on its own
process and then ``exec``s the kernel, so the limits hold for everything the
learner's code does and nothing is left running between the two.

* ``RLIMIT_AS`` (address space) = N MB: an oversized allocation fails inside the
  learner's cell (``MemoryError`` / torch's "can't allocate memory") instead of
  driving the machine into swap or the kernel OOM killer.
* ``RLIMIT_CORE`` = 0: a crashing kernel leaves no core dump behind.
* GPUs are hidden (``CUDA_VISIBLE_DEVICES=""``): CUDA reserves far more address
  space than any sensible limit, and grades must not depend on the hardware
  the grader happens to have. Every notebook runs on CPU by design.

It is a plain script (standard library only) so it starts in milliseconds.
"""

from __future__ import annotations

import os
import resource
import sys


def apply_limits(memory_mb: int) -> None:
    """Limit this process (and what it execs) to ``memory_mb`` of address space; 0 means unlimited."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb > 0:
        size = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (size, size))
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def main(argv: list[str]) -> None:
    if "--" not in argv:
        raise SystemExit("usage: sandbox.py --memory-mb N -- KERNEL_COMMAND...")
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    memory_mb = 0
    for option in options:
        if option.startswith("--memory-mb="):
            memory_mb = int(option.split("=", 1)[1])
        else:
            raise SystemExit(f"sandbox.py: unknown option {option!r} (known: --memory-mb=N)")
    if not command:
        raise SystemExit("sandbox.py: no kernel command after '--'")
    apply_limits(memory_mb)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Time, memory, process, disk and output limits for grading one notebook, sized per assignment.

A learner's endless loop, ``os._exit``, fork bomb, runaway allocation or flood
of output must cost the grader a bounded amount of time, memory and disk,
never the rest of the class. The limits, all on by default (the sandbox in
:mod:`autograder.sandbox.launch` applies them to the notebook's whole process tree):

* ``cell_timeout_s``: a cell running longer is interrupted (nbgrader's
  ``Execute.timeout`` with ``interrupt_on_timeout``); a kernel that ignores the
  interrupt is restarted.
* ``notebook_timeout_s``: the whole notebook, restarts included; cells not run
  by then score 0.
* ``memory_mb``: the whole sandbox's memory (a cgroup where one can be made)
  and each process's address space (``RLIMIT_AS``), so an oversized
  allocation raises ``MemoryError`` in that cell instead of swapping the grading
  machine to death. 0 turns it off.
* ``processes``: tasks (processes and threads) in the sandbox; a fork bomb stops there.
* ``file_mb`` per file written and ``scratch_mb`` for the sandbox's whole
  writable disk (a tmpfs); ``cpu_s`` of CPU time per process.
* ``output_bytes_cell`` and ``output_bytes_notebook``: bytes (not lines) of
  output kept per cell and per notebook; the rest is cut with a note.

Each assignment's values are declared in its judge file
(``LIMITS = Limits(...)`` in ``autograder/judge/<assignment>.py``, read by
``judge/facts.limits_for``), about ten
times the slowest graded cell of the solution notebook measured on 2 CPU
cores, so a slow machine never costs a correct learner points; an assignment
that declares none gets ``DEFAULT``. Override them for one run with the command's
``--cell-timeout/--notebook-timeout/--memory-mb`` flags or the environment
variables below (the flags set them for nbgrader).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Limits:
    cell_timeout_s: int = 120
    notebook_timeout_s: int = 600
    memory_mb: int = 4096
    processes: int = 256
    file_mb: int = 64
    scratch_mb: int = 256
    cpu_s: int = 900
    output_bytes_cell: int = 100_000
    output_bytes_notebook: int = 2_000_000
    threads: int = 2  # torch's intra-op threads in the sandbox: grading runs --jobs at once on few cores


DEFAULT = Limits()

ENV = {
    "cell_timeout_s": "GPIPE_GRADE_CELL_TIMEOUT",
    "notebook_timeout_s": "GPIPE_GRADE_NOTEBOOK_TIMEOUT",
    "memory_mb": "GPIPE_GRADE_MEMORY_MB",
    "processes": "GPIPE_GRADE_PROCESSES",
}

UNITS = {"memory_mb": "MB", "processes": "processes"}


def overridden(limits: Limits, environ: dict[str, str] | None = None) -> Limits:
    """``limits`` with the environment's overrides (``ENV``: one run's limits, without editing a judge)."""
    environ = os.environ if environ is None else environ
    overrides = {}
    for field, var in ENV.items():
        if environ.get(var, "").strip():
            try:
                overrides[field] = int(environ[var])
            except ValueError:
                raise ValueError(f"{var}={environ[var]!r} is not a whole number of "
                                 f"{UNITS.get(field, 'seconds')}") from None
    return replace(limits, **overrides)

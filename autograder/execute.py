"""nbgrader's Execute step, made safe against learners' code.

Plain nbgrader runs a notebook in one kernel and gives up on the whole
submission when that kernel dies (``os._exit``, a segfault, the OOM killer) or
stops answering (an endless loop that swallows the interrupt): the student
gets no grade at all and the log says little. :class:`ResilientExecute` keeps
nbgrader's behaviour for ordinary errors and adds:

* limits per assignment (:mod:`autograder.limits`): each cell gets
  ``cell_timeout_s`` and is interrupted after it; the notebook as a whole gets
  ``notebook_timeout_s``; the kernel runs under ``memory_mb`` of address space
  (via :mod:`autograder.sandbox`);
* when the kernel dies or ignores the interrupt, that cell gets an error
  output, the kernel is restarted, every earlier cell except the broken ones is
  replayed silently, and grading goes on with the next cell. So a broken
  exercise scores like an unanswered one and the rest of the notebook counts;
* every code cell that could not be run (time used up, kernel beyond repair)
  gets an error output too, so nbgrader scores its tests 0 instead of treating
  an empty output as a pass.

The error names written into the notebook (``CellTimeoutError``,
``KernelDied``, ``NotRun``) are what the instructor command's per-student log
lines report.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient.client import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbgrader.preprocessors import Execute
from traitlets import Integer

from .limits import Limits, limits_for

SANDBOX = str(Path(__file__).with_name("sandbox.py"))
QUIET = "--IPKernelApp.log_level=ERROR"  # no start-up chatter from every kernel on the instructor's terminal


class LimitedKernelManager(AsyncKernelManager):
    """Starts the kernel through :mod:`autograder.sandbox`, which applies the memory limit."""

    memory_limit_mb = Integer(0, help="Address-space limit of the kernel in MB; 0 for none.").tag(config=True)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        command = super().format_kernel_cmd(extra_arguments)
        return [sys.executable, SANDBOX, f"--memory-mb={self.memory_limit_mb}", "--", *command]


class ResilientExecute(Execute):
    """Execute every cell under the assignment's limits; survive dead and stuck kernels."""

    max_restarts = Integer(3, help="Kernel restarts allowed per notebook before the rest is scored 0.").tag(
        config=True)

    def __init__(self, **kw: Any) -> None:
        kw["kernel_manager_class"] = LimitedKernelManager
        super().__init__(**kw)
        self.shutdown_kernel = "immediate"  # a stuck kernel is killed, not waited for
        self.iopub_timeout = 10  # generous: after a normal reply, late output must not look like a hang

    def create_kernel_manager(self) -> Any:
        km = super().create_kernel_manager()
        km.memory_limit_mb = self.limits.memory_mb
        return km

    # ---- the notebook loop -------------------------------------------------------------------

    def preprocess(self, nb: Any, resources: Any = None, km: Any = None) -> tuple[Any, Any]:
        info = (resources or {}).get("nbgrader") or {}
        self.limits: Limits = limits_for(info.get("assignment"))
        self.where = "/".join(x for x in (info.get("student"), info.get("assignment"), info.get("notebook")) if x)
        NotebookClient.__init__(self, nb, km)
        if QUIET not in self.extra_arguments:  # some callers (nbgrader's Validator) reset the arguments
            self.extra_arguments = [*self.extra_arguments, QUIET]
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        started = time.monotonic()
        deadline = started + self.limits.notebook_timeout_s
        skipped: set[int] = set()  # cells that broke the kernel: never replayed
        stopped = ""  # once set, every remaining code cell is marked NotRun with this reason
        restarts = 0
        try:
            self._start_kernel()
            for index, cell in enumerate(self.nb.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                remaining = deadline - time.monotonic()
                if not stopped and remaining < 1:
                    stopped = f"the notebook used up its {self.limits.notebook_timeout_s} s time limit"
                if stopped:
                    cell.outputs = []
                    self._fail(cell, "NotRun", f"not run: {stopped}")
                    continue
                problem = self._run_cell(cell, resources, index, remaining)
                if problem is None:
                    continue
                self._fail(cell, *problem)
                self.log.warning("%s: cell %s: %s", self.where, _cell_name(cell, index), problem[1])
                skipped.add(index)
                restarts += 1
                if restarts > self.max_restarts:
                    stopped = f"the kernel was restarted {self.max_restarts} times already"
                    continue
                stopped = self._restart(index, skipped, deadline)
        finally:
            peak = self._peak_memory_mb()
            self._stop_kernel()
        seconds = round(time.monotonic() - started, 1)
        self.nb.metadata["autograder"] = {"seconds": seconds, "restarts": restarts, "peak_memory_mb": peak,
                                          "limits": asdict(self.limits)}
        self.log.info("%s: executed in %.1f s with %d kernel restart(s)", self.where, seconds, restarts)
        self.set_widgets_metadata()
        return self.nb, self.resources

    def _run_cell(self, cell: Any, resources: Any, index: int, remaining: float) -> tuple[str, str] | None:
        """Run one cell; None if the kernel is still usable afterwards, else (error name, reason)."""
        limit = self.limits.cell_timeout_s
        if remaining < limit:
            self.timeout = max(1, int(remaining))
            why = f"the notebook's remaining time ({self.timeout} s of {self.limits.notebook_timeout_s} s)"
        else:
            self.timeout = limit
            why = f"the {limit} s limit per cell"
        self.error_on_timeout = {
            "ename": "CellTimeoutError",
            "evalue": f"this cell ran longer than {why} and was interrupted (an endless loop?)",
            "traceback": [f"CellTimeoutError: this cell ran longer than {why} and was interrupted"],
        }
        try:
            self.preprocess_cell(cell, resources, index)
        except DeadKernelError:
            memory = f", or the {self.limits.memory_mb} MB memory limit" if self.limits.memory_mb else ""
            return ("KernelDied", "the Python kernel stopped while this cell ran (os._exit, a crash"
                    f"{memory}); it was restarted without this cell")
        except CellTimeoutError:
            return ("CellTimeoutError", f"this cell ran longer than {why} and ignored the interrupt; "
                    "the kernel was restarted without it")
        return None

    # ---- kernel lifecycle --------------------------------------------------------------------

    def _start_kernel(self) -> None:
        if self.km is None:
            self.km = self.create_kernel_manager()
        if not self.km.has_kernel:
            self.start_new_kernel()
        if self.kc is None:
            self.start_new_kernel_client()
        self.timeout = self.limits.cell_timeout_s
        reply = self.wait_for_reply(self.kc.kernel_info())
        if reply is None:
            raise RuntimeError("the kernel started but did not answer kernel_info")
        self.nb.metadata["language_info"] = reply["content"]["language_info"]

    def _stop_kernel(self) -> None:
        if self.km is not None:
            try:
                self._cleanup_kernel()
            finally:
                self.km = None
                self.kc = None

    def _peak_memory_mb(self) -> int | None:
        """The kernel's peak address space (what the memory limit caps), to size limits from real runs."""
        try:
            status = Path(f"/proc/{self.km.provisioner.pid}/status").read_text()
        except (AttributeError, OSError, TypeError):
            return None
        peak = [line.split()[1] for line in status.splitlines() if line.startswith("VmPeak:")]
        return int(peak[0]) // 1024 if peak else None

    def _restart(self, upto: int, skipped: set[int], deadline: float) -> str:
        """Fresh kernel with cells before ``upto`` replayed (except ``skipped``); '' or why it failed."""
        self._stop_kernel()
        try:
            self._start_kernel()
            for j in range(upto):
                cell = self.nb.cells[j]
                if j in skipped or cell.cell_type != "code" or not cell.source.strip():
                    continue
                remaining = deadline - time.monotonic()
                if remaining < 1:
                    return f"the notebook used up its {self.limits.notebook_timeout_s} s time limit"
                self.timeout = max(1, int(min(self.limits.cell_timeout_s, remaining)))
                msg_id = self.kc.execute(cell.source, store_history=False, stop_on_error=False)
                if self.wait_for_reply(msg_id, cell) is None:
                    return f"replaying cell {_cell_name(cell, j)} after a restart timed out"
        except (DeadKernelError, CellTimeoutError, RuntimeError) as exc:
            return f"the kernel could not be restarted ({type(exc).__name__}: {exc})"
        return ""

    @staticmethod
    def _fail(cell: Any, ename: str, evalue: str) -> None:
        cell.setdefault("outputs", []).append(
            nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]))


def _cell_name(cell: Any, index: int) -> str:
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return f"{grade_id!r}" if grade_id else f"#{index}"

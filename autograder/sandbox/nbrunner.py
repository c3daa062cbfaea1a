"""Run one notebook, cell by cell, inside the sandbox: a plain script, copied into the sandbox's scratch.

``python nbrunner.py IN.ipynb OUT.ipynb LIMITS.json`` executes every code cell
of IN in a fresh Python kernel and writes the executed notebook to OUT. The
result is the learner's *feedback* (their visible tests' outputs) and the
run's timing; no score comes from it (the judge scores outside, see
``autograder/judge``), so nothing here has to resist the learner's code: it
only has to keep going when that code misbehaves.

* each cell gets ``cell_timeout_s`` and is interrupted after it; the notebook
  as a whole gets ``notebook_timeout_s``;
* when the kernel dies (``os._exit``, a crash, the memory limit) or ignores
  the interrupt, that cell gets an error output, the kernel is restarted,
  every earlier cell except the broken ones is replayed silently, and the run
  goes on with the next cell;
* every code cell that could not be run gets an error output saying why;
* each cell keeps at most ``output_bytes_cell`` bytes of output (the trusted
  side cuts again when it reads OUT back).

The error names written into the notebook (``CellTimeoutError``,
``KernelDied``, ``NotRun``) are what the instructor command's log lines report.
It imports nothing from the repository (there is none in the sandbox).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient.client import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from traitlets import Integer

QUIET = "--IPKernelApp.log_level=ERROR"  # no start-up chatter
CUT = "\n[... output cut: this cell printed more than {} bytes]\n"


class ResilientExecute(NotebookClient):
    """Execute every cell under the assignment's limits; survive dead and stuck kernels."""

    max_restarts = Integer(3, help="Kernel restarts allowed per notebook before the rest is not run.").tag(
        config=True)

    def __init__(self, nb: Any, limits: Any, path: str) -> None:
        super().__init__(nb, kernel_manager_class=AsyncKernelManager, resources={"metadata": {"path": path}},
                         allow_errors=True, interrupt_on_timeout=True, iopub_timeout=10,
                         shutdown_kernel="immediate",  # a stuck kernel is killed, not waited for
                         extra_arguments=["--HistoryManager.hist_file=:memory:", QUIET])
        self.limits = limits
        self.on_cell_executed = _record_reply_error

    def run(self) -> Any:
        self.reset_execution_trackers()
        started = time.monotonic()
        deadline = started + self.limits.notebook_timeout_s
        skipped: set[int] = set()  # cells that broke the kernel or ran out of time: never replayed
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
                problem = self._run_cell(cell, index, remaining)
                if problem is None:
                    if any(o.get("ename") == "CellTimeoutError" for o in cell.outputs):
                        skipped.add(index)  # interrupted in time, but a replay would loop again
                    continue
                self._fail(cell, *problem)
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
        self.nb.metadata["autograder"] = {"seconds": seconds, "restarts": restarts, "peak_memory_mb": peak}
        return self.nb

    def _run_cell(self, cell: Any, index: int, remaining: float) -> tuple[str, str] | None:
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
            self.execute_cell(cell, index, store_history=True)
        except DeadKernelError:
            memory = f", or the {self.limits.memory_mb} MB memory limit" if self.limits.memory_mb else ""
            return ("KernelDied", "the Python kernel stopped while this cell ran (os._exit, a crash"
                    f"{memory}); it was restarted without this cell")
        except CellTimeoutError:
            return ("CellTimeoutError", f"this cell ran longer than {why} and ignored the interrupt; "
                    "the kernel was restarted without it")
        finally:
            cap_outputs(cell, self.limits.output_bytes_cell)
        return None

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


def _record_reply_error(cell: Any, execute_reply: Any, **_: Any) -> None:
    """Give the cell the error its reply reports when no output shows it (a timeout's CellTimeoutError)."""
    content = (execute_reply or {}).get("content", {})
    if content.get("status") != "error":
        return
    if not any(o.get("output_type") == "error" and o.get("ename") == content.get("ename") for o in cell.outputs):
        cell.outputs.append(nbformat.v4.new_output("error", ename=str(content.get("ename", "")),
                                                   evalue=str(content.get("evalue", "")),
                                                   traceback=list(content.get("traceback", []))))


def cap_outputs(cell: Any, limit: int) -> bool:
    """Keep at most ``limit`` bytes of ``cell``'s outputs (text cut, the rest dropped); True if anything was cut."""
    budget, kept, cut = limit, [], False
    for out in cell.get("outputs", []):
        size = len(json.dumps(out, default=str).encode())
        if size <= budget:
            kept.append(out)
            budget -= size
            continue
        cut = True
        if out.get("output_type") == "stream" and budget > 200:
            text = out.get("text", "")
            text = "".join(text) if isinstance(text, list) else str(text)
            out["text"] = text.encode()[: budget - 200].decode(errors="ignore")
            kept.append(out)
        break
    if cut:
        kept.append(nbformat.v4.new_output("stream", name="stderr", text=CUT.format(limit)))
        cell["outputs"] = kept
    return cut


def main(argv: list[str]) -> None:
    source, target, limits_file = argv
    limits = SimpleNamespace(**json.loads(Path(limits_file).read_text()))
    nb = nbformat.read(source, as_version=4)
    ResilientExecute(nb, limits, str(Path(source).parent)).run()
    nbformat.write(nb, target)


if __name__ == "__main__":
    main(sys.argv[1:])

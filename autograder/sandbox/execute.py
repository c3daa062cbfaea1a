"""Execute a learner's notebook in the sandbox for their feedback, and read the result back as untrusted data.

The executed notebook gives the learner the outputs of their visible tests and
the grader the run's timing and events (timeouts, kernel deaths, memory); it
gives no score. It is written inside the sandbox by ``nbrunner.py`` and could
hold anything the learner's code put there, so the trusted side keeps only
what it needs: the outputs of each code cell (matched by position to the
submitted cells, whose sources and metadata come from the submission as
collected), cut to the per-cell and per-notebook byte limits, and only plain
kinds of output (text, PNG, errors): no HTML or JavaScript reaches a feedback
page the instructor might open.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .launch import run_sandboxed
from .limits import Limits
from .nbrunner import cap_outputs

RUNNER = Path(__file__).with_name("nbrunner.py")
# nbgrader's name for "a grader runs this notebook": gpipe_core.course.widgets.in_grader() skips slow demos and widgets
GRADER_ENV = {"NBGRADER_EXECUTION": "autograde"}
KEPT_MIME = ("text/plain", "image/png")
EVENTS = {"CellTimeoutError": "TIMEOUT", "KernelDied": "KERNEL_DIED", "NotRun": "NOT_RUN"}


@dataclass
class Executed:
    notebook: Any  # the submitted notebook with the run's (cut, plain) outputs
    seconds: float | None
    events: list[tuple[str, str]] = field(default_factory=list)  # (CODE, detail) for the log line


def execute(notebook: Path, limits: Limits, view: Path | None, isolate: bool = True) -> Executed:
    """Run ``notebook`` in a sandbox under ``limits`` with ``view`` as gpipe_core; never raises for its content."""
    submitted = nbformat.read(notebook, as_version=4)
    with tempfile.TemporaryDirectory(prefix="gpipe-run-") as tmp:
        scratch = Path(tmp)
        shutil.copyfile(notebook, scratch / "notebook.ipynb")
        shutil.copyfile(RUNNER, scratch / "nbrunner.py")
        (scratch / "limits.json").write_text(json.dumps(asdict(limits)))
        (scratch / "executed.ipynb").write_bytes(b"")
        result = run_sandboxed([sys.executable, "nbrunner.py", "notebook.ipynb", "executed.ipynb", "limits.json"],
                               scratch=scratch, limits=limits, view=view, timeout=limits.notebook_timeout_s + 60,
                               env=GRADER_ENV, isolate=isolate)
        with (scratch / "executed.ipynb").open("rb") as fh:
            raw = fh.read(limits.output_bytes_notebook + 2 * notebook.stat().st_size + 1)
    events: list[tuple[str, str]] = []
    if result.killed_reason:
        events.append(("SANDBOX", result.killed_reason))
    try:
        ran = nbformat.reads(raw.decode(), as_version=4)
        if len(ran.cells) != len(submitted.cells):
            raise ValueError("its cells do not match the submission's")
    except Exception as exc:  # whatever the sandbox wrote, it is only data
        tail = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        why = f"{type(exc).__name__}: {str(exc)[:120]}; {tail[0][:160]}"
        events.append(("NOT_RUN", f"the notebook run gave no readable result ({why})"))
        return Executed(_mark_not_run(submitted, why), None, events)
    events += keep_plain(submitted, ran.cells, limits)
    seconds = ran.metadata.get("autograder", {}).get("seconds")
    return Executed(submitted, seconds if isinstance(seconds, (int, float)) else None, events)


def as_submitted(notebook: Path, limits: Limits) -> Executed:
    """The notebook with the outputs the learner saved, reduced as a run's are; nothing is run (the default).

    The score never came from the feedback run, so grading shows the learner's own outputs (plain kinds
    only, cut to the same limits) under the judge's verdicts; ``--run-notebooks`` runs them again instead.
    """
    submitted = nbformat.read(notebook, as_version=4)
    keep_plain(submitted, list(submitted.cells), limits)  # events the learner saved are not the grader's: none
    return Executed(submitted, None, [])


def keep_plain(submitted: Any, cells: list[Any], limits: Limits) -> list[tuple[str, str]]:
    """Give each code cell of ``submitted`` the plain, capped outputs of its partner in ``cells``; the events."""
    events: list[tuple[str, str]] = []
    budget = limits.output_bytes_notebook
    for index, (cell, out) in enumerate(zip(submitted.cells, cells)):
        if cell.cell_type != "code" or out.get("cell_type") != "code":
            continue
        outputs = out.get("outputs", [])
        cell.outputs = [o for o in (_plain(o) for o in (outputs if isinstance(outputs, list) else [])
                                    if isinstance(o, dict)) if o is not None]
        cap_outputs(cell, min(limits.output_bytes_cell, max(budget, 0)))
        budget -= len(json.dumps(cell.outputs).encode())
        for o in cell.outputs:
            if o.get("output_type") == "error" and o.get("ename") in EVENTS:
                events.append((EVENTS[o["ename"]], f"in {_cell_name(cell, index)}: {o.get('evalue', '')}"))
            elif o.get("output_type") == "error" and ("MemoryError" in o.get("ename", "")
                                                       or "can't allocate memory" in str(o.get("evalue", ""))):
                events.append(("MEMORY", f"in {_cell_name(cell, index)}: an allocation hit the memory limit"))
    return events


def _plain(output: Any) -> Any | None:
    """The output with plain kinds of data only (None if nothing is left); errors and streams as text."""
    kind = output.get("output_type")
    if kind == "stream":
        text = output.get("text", "")
        return nbformat.v4.new_output("stream", name="stderr" if output.get("name") == "stderr" else "stdout",
                                      text=text if isinstance(text, str) else "".join(map(str, text)))
    if kind == "error":
        return nbformat.v4.new_output("error", ename=str(output.get("ename", ""))[:200],
                                      evalue=str(output.get("evalue", ""))[:2000],
                                      traceback=[str(t)[:5000] for t in output.get("traceback", [])][:50])
    if kind in ("display_data", "execute_result"):
        data = {k: v for k, v in (output.get("data") or {}).items() if k in KEPT_MIME and isinstance(v, (str, list))}
        if not data:
            return None
        if kind == "execute_result":
            return nbformat.v4.new_output(kind, data=data, execution_count=None)
        return nbformat.v4.new_output(kind, data=data)
    return None


def _mark_not_run(nb: Any, why: str) -> Any:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("error", ename="NotRun", evalue=f"not run: {why}",
                                                   traceback=[f"NotRun: {why}"])]
    return nb


def _cell_name(cell: Any, index: int) -> str:
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return f"{grade_id!r}" if grade_id else f"cell #{index}"

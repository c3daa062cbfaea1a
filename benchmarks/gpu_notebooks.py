"""Run every solution notebook on the GPU, as a Colab GPU session would, and report each graded cell.

The notebooks promise to work in Colab-style GPU sessions: there ``DEVICE`` is
``"cuda"`` and every test must build what it compares on one device. This
script executes ``solutions/*/*.ipynb`` top to bottom in a fresh kernel each
(errors do not stop the run), then reports every graded test cell as passed,
failed (with the error) or not run, plus any other cell that raised, since a
broken demo or helper breaks the learner's session too.

    python3 -m benchmarks.gpu_notebooks                  # needs CUDA; writes $OUT/gpu_notebooks.json
    python3 -m benchmarks.gpu_notebooks --allow-cpu 01   # the harness itself, on a machine without a GPU

The kernel imports ``gpipe_core`` from this checkout (PYTHONPATH), so the
notebooks' setup cell never reaches for the network. ``--grader-mode`` sets
``NBGRADER_EXECUTION`` as the autograder does (slow demos skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).absolute().parent.parent


@dataclass
class CellResult:
    notebook: str
    cell: int  # index among the notebook's cells
    name: str  # the nbgrader grade_id, or "cell N" for an ungraded cell
    graded: bool
    points: float
    status: str  # "pass", "fail" or "not run"
    error: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", help="assignment prefixes to run, e.g. 04 05 (default: all)")
    parser.add_argument("--cell-timeout", type=int, default=240, help="seconds per cell (default 240)")
    parser.add_argument("--budget", type=int, default=330,
                        help="seconds for all notebooks together; notebooks left when it runs out are reported "
                             "as not run (default 330)")
    parser.add_argument("--grader-mode", action="store_true", help="set NBGRADER_EXECUTION=1 (skip slow demos)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without CUDA (to check the harness only)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "benchmarks" / "results")))
    args = parser.parse_args(argv)
    if args.cell_timeout < 1 or args.budget < 1:
        parser.error("--cell-timeout and --budget must be positive numbers of seconds")
    return args


def notebooks(only: list[str], root: Path = ROOT) -> list[Path]:
    """The solution notebooks, in assignment order, narrowed to the given assignment prefixes."""
    found = sorted((root / "solutions").glob("*/*.ipynb"))
    chosen = [p for p in found if not only or any(p.parent.name.startswith(o) for o in only)]
    if not chosen:
        raise SystemExit(f"no solution notebook matches {only}: the folders are "
                         f"{', '.join(p.parent.name for p in found)}")
    return chosen


def report(nb: Any, name: str) -> list[CellResult]:
    """Every graded test cell's result, and every other code cell that raised, from an executed notebook."""
    results = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        meta = cell.metadata.get("nbgrader", {})
        graded = bool(meta.get("grade"))
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        ran = cell.get("execution_count") is not None
        if not graded and not errors:
            continue
        status = "fail" if errors else ("pass" if ran else "not run")
        first = next((e for e in errors if e.get("ename") == "CellTimeoutError"), errors[0] if errors else {})
        error = f"{first.get('ename', '')}: {first.get('evalue', '')}" if errors else ""
        results.append(CellResult(name, index, meta.get("grade_id") or f"cell {index}", graded,
                                  float(meta.get("points", 0) or 0), status, error[:500]))
    return results


def execute(path: Path, cell_timeout: int, deadline: float) -> tuple[Any, str]:
    """Run one notebook cell by cell in a fresh kernel, errors allowed, until ``deadline`` (time.monotonic).

    A cell that runs past its timeout is interrupted and gets an error output;
    cells left when the deadline passes stay unrun. Returns the notebook and a
    note saying why it stopped early ('' when every cell ran).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = unrun(path)  # results come from this run only
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                            interrupt_on_timeout=True, resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            remaining = deadline - time.monotonic()
            if remaining < 1:
                return nb, "stopped: the time budget ran out"
            client.timeout = int(max(1, min(cell_timeout, remaining)))
            started = time.monotonic()
            try:
                client.execute_cell(cell, index)
            except DeadKernelError as exc:
                cell.outputs.append(nbformat.v4.new_output("error", ename="DeadKernelError", evalue=str(exc),
                                                           traceback=[]))
                return nb, "stopped: the kernel died"
            if time.monotonic() - started >= client.timeout:  # nbclient interrupted it (KeyboardInterrupt)
                cell.outputs.append(nbformat.v4.new_output(
                    "error", ename="CellTimeoutError", traceback=[],
                    evalue=f"the cell ran longer than {client.timeout} s and was interrupted"))
    return nb, ""


def unrun(path: Path) -> Any:
    """The notebook as read, with no outputs: every graded cell reports 'not run'."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def print_report(results: list[CellResult], notes: dict[str, str]) -> None:
    for nb in dict.fromkeys(r.notebook for r in results) | dict.fromkeys(notes):
        rows = [r for r in results if r.notebook == nb]
        graded = [r for r in rows if r.graded]
        passed = sum(r.status == "pass" for r in graded)
        print(f"{nb}: {passed}/{len(graded)} graded cells pass" + (f" ({notes[nb]})" if notes.get(nb) else ""))
        for r in rows:
            if r.status != "pass":
                print(f"  {r.status.upper():7} {r.name}{'' if r.graded else ' (ungraded)'}: {r.error}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paths = notebooks(args.only)
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("no CUDA device: run this on a GPU machine (or pass --allow-cpu to check the harness)", file=sys.stderr)
        return 2
    try:
        import ipykernel  # noqa: F401
        import nbclient  # noqa: F401
    except ImportError as exc:
        print(f"cannot run notebooks: {exc}; install them with: python3 -m pip install nbclient ipykernel",
              file=sys.stderr)
        return 2
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if args.grader_mode:
        os.environ["NBGRADER_EXECUTION"] = "1"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    deadline = time.monotonic() + args.budget
    results: list[CellResult] = []
    notes: dict[str, str] = {}
    for path in paths:
        name = f"{path.parent.name}/{path.name}"
        if time.monotonic() > deadline - 5:
            notes[name] = f"not run: the {args.budget} s budget was used up"
            results += report(unrun(path), name)
            continue
        started = time.monotonic()
        nb, note = execute(path, args.cell_timeout, deadline)
        results += report(nb, name)
        notes[name] = f"{note}; " if note else ""
        notes[name] += f"{time.monotonic() - started:.0f} s"
        print_report([r for r in results if r.notebook == name], {name: notes[name]})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_notebooks.json").write_text(json.dumps(
        {"device": device, "torch": torch.__version__, "grader_mode": args.grader_mode, "notes": notes,
         "cells": [asdict(r) for r in results]}, indent=1))
    graded = [r for r in results if r.graded]
    print(f"\n{sum(r.status == 'pass' for r in graded)}/{len(graded)} graded cells pass on {device}; "
          f"{sum(not r.graded for r in results)} other cells raised; wrote {args.out / 'gpu_notebooks.json'}")
    return 0 if results and all(r.graded and r.status == "pass" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""A generated class of submissions with known right grades, to check the grader end to end.

Every assignment gets a correct submission, the untouched release and one
submission per planted mistake (``autograder/planted/<assignment>.json``). One
small assignment also gets everything a real class throws at a grader by
accident: endless loops (one that obeys the interrupt, one that ignores it), a
cell that raises, ``os._exit``, a cell that kills its parent process, a memory
hog, deleted, edited and reordered test cells, a missing notebook, a file that
is not JSON, extra files, a renamed notebook and the flat folder layout.
(Deliberate attacks are in :mod:`autograder.selftest.hostile`.)

Each :class:`Case` says what the right grade is without running anything:
which test cells must fail (``lost``). The judge scores the learner's
definitions, not the notebook's run, so an exercise cell that loops, raises,
exits or floods memory *around* its definitions scores what those definitions
are worth (here: the planted mistake's), and the log line names what went
wrong in the run (TIMEOUT, KERNEL_DIED, MEMORY, NOT_RUN).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from .. import course_root, notebook_names

BLANK = "blank-exercise"  # the exercise left as released


@dataclass(frozen=True)
class Case:
    student: str
    assignment: str
    description: str
    lost: frozenset[str] | None = frozenset()  # exactly the test cells that must score 0; None: not known exactly
    zero: bool = False  # every test cell scores 0
    same_as: str | None = None  # must score exactly like this student on the same assignment
    at_least: frozenset[str] = frozenset()  # test cells that must be among the lost ones
    codes: frozenset[str] = frozenset()  # problem codes the student's log line must contain
    run_codes: frozenset[str] = frozenset()  # codes only a notebook run (--run-notebooks) can give
    layout: str = "nested"  # nested: <student>/<assignment>/<nb>.ipynb, flat: <student>/<nb>.ipynb


def planted(assignment: str) -> list[dict[str, Any]]:
    """The planted mistakes of ``assignment`` (empty when the authors have not written them yet)."""
    path = course_root() / "autograder" / "planted" / f"{assignment}.json"
    return json.loads(path.read_text()) if path.exists() else []


def needs_probe(mistake: dict[str, Any]) -> bool:
    """Whether a planted mistake loses its tests only in a real probe: ``slow`` ones need the probe's time
    limit, ``view`` ones the grading view (gpipe_core without the bodies learners write). The others lose
    them in the judge's tests too (tests/test_judge.py runs the probe's tasks in-process)."""
    return bool(mistake.get("slow") or mistake.get("view"))


def grade_id(cell: Any) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def tests_of(nb: Any) -> list[str]:
    """Grade ids of the autograded test cells, in notebook order."""
    return [grade_id(c) for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")]


def solved(assignment: str, notebook: str, released: Path) -> Any:
    """The released notebook with every exercise filled in with the solution's code (markers removed)."""
    source = nbformat.read(course_root() / "solutions" / assignment / f"{notebook}.ipynb", as_version=4)
    answers = {grade_id(c): _strip_markers(c.source) for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.read(released / assignment / f"{notebook}.ipynb", as_version=4)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


SAVED = "output the learner saved"


def with_saved_outputs(nb: Any) -> Any:
    """``nb`` with outputs saved in its first code cell, as a learner's Jupyter leaves them: a stream, a
    plain result and an HTML display holding a script (the feedback keeps the first two, never the third)."""
    nb = copy.deepcopy(nb)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=SAVED + "\n"),
                    nbformat.v4.new_output("display_data", data={"text/html": "<script>window.pwned=1</script>",
                                                                 "text/plain": "<display>"}),
                    nbformat.v4.new_output("execute_result", data={"text/plain": "42"}, execution_count=1)]
    return nb


def _strip_markers(source: str) -> str:
    return "\n".join(ln for ln in source.splitlines()
                     if ln.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))


def replace_cell(nb: Any, cell_id: str, source: str) -> Any:
    nb = copy.deepcopy(nb)
    cells = [c for c in nb.cells if grade_id(c) == cell_id]
    if not cells:
        raise KeyError(f"no cell with grade_id {cell_id!r} (planted mistake or test out of date?)")
    cells[0].source = source
    return nb


MEMORY_HOG = "hog = b\"x\" * (8 * 2**30)  # 8 GB in one go, filled\n"
KILL_PARENT = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)  # the process running the kernel\n"
STUBBORN_LOOP = ("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)  # ignores the interrupt\n"
                 "while True:\n    time.sleep(0.05)\n")


def build(folder: Path, released: Path, assignments: list[str], small: str,
          every_mistake: bool = True) -> list[Case]:
    """Write the class into ``folder`` (layout for ``collect``); ``small`` gets the hard cases.

    Without ``every_mistake``, an assignment's planted mistakes are the first one and those that
    :func:`needs_probe` (the test suite's class: tests/test_judge.py judges the others in-process)."""
    cases: list[Case] = []

    def put(case: Case, nb: Any | None, name: str | None = None, raw: str | None = None) -> None:
        nested = folder / case.student / case.assignment
        target = nested if case.layout == "nested" else folder / case.student
        target.mkdir(parents=True, exist_ok=True)
        if raw is not None:
            (target / name).write_text(raw)
        elif nb is not None:
            nbformat.write(nb, target / name)
        cases.append(case)

    for a in assignments:
        (nb_name,) = notebook_names(a)[:1] or [None]
        if nb_name is None:
            continue
        file = f"{nb_name}.ipynb"
        correct = solved(a, nb_name, released)
        stub = nbformat.read(released / a / file, as_version=4)
        everything = frozenset(tests_of(stub))
        put(Case("correct", a, "every exercise solved"), with_saved_outputs(correct), file)
        put(Case("untouched", a, "the released notebook as is", lost=everything, zero=True), stub, file)
        for i, mistake in enumerate(planted(a), 1):
            if not (every_mistake or i == 1 or needs_probe(mistake)):
                continue
            put(Case(f"mistake{i}", a, f"planted mistake {mistake['name']}: {mistake['description']}",
                     lost=frozenset(mistake["loses"])),
                replace_cell(correct, mistake["cell"], mistake["source"]), file)
        if a != small:
            continue
        mistakes = planted(a)
        if not mistakes:
            raise ValueError(f"{a} has no planted mistakes (autograder/planted/{a}.json); pick another small one")
        first = mistakes[0]
        cell, loses = first["cell"], frozenset(first["loses"])
        blank_source = next(c.source for c in stub.cells if grade_id(c) == cell)
        put(Case(BLANK, a, f"exercise {cell} left as released", lost=None, at_least=loses),
            replace_cell(correct, cell, blank_source), file)
        put(Case("endless-loop", a, f"{first['name']} plus an endless loop after it", lost=loses,
                 run_codes=frozenset({"TIMEOUT"})),
            replace_cell(correct, cell, first["source"] + "\nwhile True:\n    pass\n"), file)
        put(Case("stubborn-loop", a, f"{first['name']} behind a loop that ignores the interrupt", lost=loses,
                 run_codes=frozenset({"TIMEOUT"})),
            replace_cell(correct, cell, STUBBORN_LOOP + first["source"]), file)
        put(Case("raises", a, f"{first['name']} behind a raise", lost=loses),
            replace_cell(correct, cell, 'raise RuntimeError("learner bug")\n' + first["source"]), file)
        put(Case("exits", a, f"{first['name']} behind os._exit", lost=loses,
                 run_codes=frozenset({"KERNEL_DIED"})),
            replace_cell(correct, cell, "import os\nos._exit(3)\n" + first["source"]), file)
        put(Case("kills-parent", a, f"{first['name']} behind a kill of the kernel's parent", lost=loses,
                 run_codes=frozenset({"NOT_RUN"})),
            replace_cell(correct, cell, KILL_PARENT + first["source"]), file)
        put(Case("memory-hog", a, f"{first['name']} behind an 8 GB allocation", lost=loses,
                 run_codes=frozenset({"MEMORY"})),
            replace_cell(correct, cell, MEMORY_HOG + first["source"]), file)
        deleted = copy.deepcopy(correct)
        gone = tests_of(deleted)[0]
        deleted.cells = [c for c in deleted.cells if grade_id(c) != gone]
        put(Case("deleted-test", a, f"test cell {gone} deleted", lost=frozenset({gone}),
                 codes=frozenset({"TEST_CELL_DELETED"})), deleted, file)
        moved = copy.deepcopy(correct)
        tests = [c for c in moved.cells if grade_id(c) in everything]
        moved.cells = [c for c in moved.cells if grade_id(c) not in everything] + tests[::-1]
        put(Case("reordered", a, "all test cells moved to the end, reversed",
                 codes=frozenset({"TEST_CELLS_REORDERED"})), moved, file)
        edited = replace_cell(correct, cell, first["source"])
        for test in loses:
            edited = replace_cell(edited, test, "pass  # the learner removed the asserts")
        put(Case("edited-test", a, f"{first['name']} with its failing tests emptied", lost=loses,
                 codes=frozenset({"LOCKED_CELL_EDITED"})), edited, file)
        put(Case("missing", a, "no notebook, only a text file", lost=everything, zero=True,
                 codes=frozenset({"MISSING_NOTEBOOK", "EXTRA_FILES_IGNORED"})), None, "notes.txt", raw="forgot it\n")
        text = nbformat.writes(correct)
        put(Case("not-json", a, "the notebook file is cut in half", lost=everything, zero=True,
                 codes=frozenset({"INVALID_NOTEBOOK"})), None, file, raw=text[: len(text) // 2])
        put(Case("extra-files", a, "correct, plus files that try to shadow modules",
                 codes=frozenset({"EXTRA_FILES_IGNORED"})), correct, file)
        extra = folder / "extra-files" / a
        (extra / "data.csv").write_text("a,b\n1,2\n")
        (extra / "gpipe_core").mkdir(exist_ok=True)
        (extra / "gpipe_core" / "__init__.py").write_text("raise SystemExit('shadowed')\n")
        (extra / "torch.py").write_text("raise SystemExit('shadowed')\n")
        put(Case("renamed", a, "correct, saved under another name", codes=frozenset({"RENAMED"})),
            correct, f"{nb_name} (1).ipynb")
        put(Case("flat-layout", a, "correct, notebook directly in the student's folder", layout="flat"),
            correct, file)
    return cases

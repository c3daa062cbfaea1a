"""How long an assignment took: the learners' own answers, so the notebooks' time estimates can be measured.

A course cannot time its learners, and one person's timed attempt says little
about a class. So every notebook ends with an ungraded question, a cell holding
``hours_spent = None``, that the learner overwrites with a number. ``export``
writes each answer beside the grade (column ``hours_spent``) and prints, per
assignment, how many answered and the median with its quartiles: the figure the
next term's notebook headers should state.

The answer is read from the submitted notebook's source with ``ast`` and only
a plain number literal counts (``2``, ``1.5``); an expression, a string or a
value outside (0, 100] hours is no answer. Nothing learner-written is ever
executed here.
"""

from __future__ import annotations

import ast
import json
import statistics
from collections.abc import Iterable
from pathlib import Path

from .. import notebook_names
from ..workspace import Workspace

NAME = "hours_spent"
MOST = 100.0  # more hours than anyone spends on one notebook: a typo or a joke, not an answer
MAX_SOURCE = 10_000  # characters of one cell worth parsing for a one-line answer


def answer(source: str) -> float | None:
    """The number assigned to ``hours_spent`` in one cell's source, or None (no answer, or not a plain number)."""
    if NAME not in source or len(source) > MAX_SOURCE:
        return None
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    found = None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == NAME):
            value = node.value
            found = value.value if isinstance(value, ast.Constant) else None
    if isinstance(found, bool) or not isinstance(found, (int, float)) or not 0 < found <= MOST:
        return None
    return float(found)


def notebook_hours(path: Path) -> float | None:
    """The learner's answer in a notebook file (the last code cell that gives one), or None."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return None
    hours = None
    for cell in cells if isinstance(cells, list) else []:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            found = answer(source) if isinstance(source, str) else None
            hours = found if found is not None else hours
    return hours


def reported(assignment: str, student: str) -> float | None:
    """Hours ``student`` reported for ``assignment`` (summed over its notebooks), None if none was given."""
    folder = Workspace.from_env().submission(student, assignment)
    answers = [notebook_hours(folder / f"{nb}.ipynb") for nb in notebook_names(assignment)]
    given = [h for h in answers if h is not None]
    return sum(given) if given else None


def summary(assignment: str, hours: Iterable[float | None]) -> str:
    """One line: how many answered, and the median with its quartiles when there are enough answers."""
    hours = list(hours)
    given = sorted(h for h in hours if h is not None)
    head = f"hours spent on {assignment}: {len(given)} of {len(hours)} answered"
    if not given:
        return head
    if len(given) < 4:
        return f"{head}, median {statistics.median(given):g} h (too few answers for quartiles)"
    low, mid, high = statistics.quantiles(given, n=4)
    return f"{head}, median {mid:g} h (half of them between {low:g} and {high:g} h)"

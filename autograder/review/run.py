"""Review: what grading cannot prevent, it lists for the instructor, as flags and holds with their evidence.

The judge scores only what the learner's own definitions compute on its
inputs, so tricks around them change no score. What remains for a person is
found here without running anything (the parts live beside this module):

* **holds** (:mod:`.capabilities`): loaded code able to tamper with
  what the probe measures in its own process, which CPython cannot stop.
  A held submission is scored only after an instructor has looked;
* **copied code** (:mod:`.similarity`): a function whose winnowed
  fingerprints match gpipe_core's own implementation of what the assignment
  blocks, or a classmate's, after subtracting what the course hands out;
* **grading machinery** touched anywhere in the notebook
  (:mod:`.machinery`, with the imports the assignment's judge flags in
  its ``REVIEW``), a notebook bent out of shape, a grade id on two
  cells, definitions too large to compare in full.

Everything reads the definitions exactly as the probe loads them
(:mod:`.definitions`), is bounded in size, and never raises for one
submission: a failure is a hold of that submission alone. Findings are
:class:`~.findings.Finding` (a flag or a hold, a rule, where, the
evidence); callers decide by their fields, never by their text.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..judge.extract import extract
from .capabilities import holds
from .definitions import MAX_REVIEW_CHARS, duplicates, effective, load, solution_text, statements
from .findings import Finding, flag, hold, review_rows
from .machinery import machinery, suspicious
from .similarity import Submission, class_findings, engine_findings, fingerprint
from .tokens import Tally

CLASS_RULES = frozenset({"copied-classmate"})  # only the class review finds these (the rest: ``review_submission``)

__all__ = ["CLASS_RULES", "Finding", "holds", "review_class", "review_rows", "review_submission", "suspicious"]


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


def _review(assignment: str, notebook: Path | Any, tally: Tally,
            own: bool = True) -> tuple[list[Finding], Submission | None]:
    """One submission's findings and its fingerprints (None when they could not be made).

    ``own=False`` makes the fingerprints only, for a comparison with classmates whose own findings were
    made when each was graded (the engine's fingerprints and the holds cost most of a review).
    """
    try:
        nb, found = load(notebook)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is this submission's finding
        return [flag("unreadable", "notebook", f"is not a readable notebook ({_why(exc)}); nothing was reviewed")], None
    try:
        found += duplicates(assignment, nb) if own else []
        size = solution_text(assignment, nb)
        if size > MAX_REVIEW_CHARS:
            return found + [hold("too-large", "solution cells", f"{size:,} characters, over the {MAX_REVIEW_CHARS:,} "
                                 "the review reads: look at them before scoring")], None
        extracted = extract(assignment, nb)
        kept = statements(assignment, extracted)
        if own:
            found += holds(assignment, extracted, kept) + machinery(assignment, nb)
        sub = fingerprint(effective(kept), tally)
        return (found + sub.findings + engine_findings(assignment, sub), sub) if own else (found, sub)
    except Exception as exc:  # noqa: BLE001 - the review's own failure stays on this submission, held
        return found + [hold("review-failed", "notebook", f"the review could not finish ({_why(exc)}); look at the "
                             "definitions before scoring")], None


def review_submission(assignment: str, notebook: Path | Any,
                      classmates: Mapping[str, Path | Any] | None = None) -> list[Finding]:
    """Every reason to review this submission (a path or a notebook node); empty when nothing stands out.

    With ``classmates`` (student -> notebook), its functions are also compared with theirs.
    """
    if classmates:
        return review_class(assignment, {**classmates, "\0me": notebook})["\0me"]
    return _review(assignment, notebook, Tally())[0]


def review_class(assignment: str, notebooks: Mapping[str, Path | Any], tally: Tally | None = None,
                 own: bool = True) -> dict[str, list[Finding]]:
    """``review_submission`` for every student of one assignment, each also compared with all the others.

    Never raises for a submission: whatever goes wrong is that student's finding. ``tally`` counts the work
    done (tokens made, index entries visited), which stays linear in the class's size within the caps.
    ``own=False``: only what the comparison finds (and a notebook that could not be read or compared).
    """
    tally = tally if tally is not None else Tally()
    found: dict[str, list[Finding]] = {}
    subs: dict[str, Submission] = {}
    for student, notebook in notebooks.items():
        found[student], sub = _review(assignment, notebook, tally, own)
        if sub is not None:
            subs[student] = sub
    try:
        for student, extra in class_findings(assignment, subs, tally).items():
            found[student] += extra
    except Exception as exc:  # noqa: BLE001 - a bug of the comparison must not cost the class its grades
        for student in subs:
            found[student].append(flag("review-failed", "class", f"the comparison with classmates failed "
                                       f"({_why(exc)}); this submission was not compared"))
    return found

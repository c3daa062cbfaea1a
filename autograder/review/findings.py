"""Finding: one reason a person should look at a submission, with its evidence.

The review used to return bare lines, and callers picked them apart by their
text ("near-identical to" and no "gpipe_core"), which a student id holding
"gpipe_core" defeated. A :class:`Finding` carries its fields, so callers
decide by ``kind`` and ``rule``, never by text:

* ``kind="flag"``: the score stands; an instructor reads the evidence (copied
  code, touched machinery, a malformed notebook);
* ``kind="hold"``: the submission may have tampered with what the probe
  measured in its own process, which CPython cannot prevent; it must not be
  scored until an instructor has looked.

A Finding is also the ``str`` of its log line. That keeps the judge's lists
of flag lines, ``result.json`` and the log working unchanged while their
callers move to the fields; nothing should parse that text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["flag", "hold"]
KINDS: tuple[Kind, ...] = ("flag", "hold")
PREFIX = {"flag": "flagged for review: ", "hold": "held for review: "}
CODE = {"flag": "FLAGGED", "hold": "HELD"}  # the log line's code for each kind


@dataclass(frozen=True, eq=False)
class Finding(str):
    """``kind`` (flag or hold), ``rule`` (a short stable name), ``where`` (cell, line or function) and ``evidence``."""

    kind: Kind
    rule: str
    where: str
    evidence: str

    def __new__(cls, kind: Kind, rule: str, where: str, evidence: str) -> Finding:
        if kind not in KINDS:
            raise ValueError(f"a finding's kind is 'flag' or 'hold', not {kind!r}")
        if not rule or not evidence:
            raise ValueError("a finding needs a rule and its evidence: an instructor must be able to act on it")
        return super().__new__(cls, f"{PREFIX[kind]}{where + ': ' if where else ''}{evidence} [{rule}]")

    def __getnewargs__(self) -> tuple[str, str, str, str]:  # pickling and copying rebuild it from its fields
        return self.kind, self.rule, self.where, self.evidence

    @property
    def held(self) -> bool:
        return self.kind == "hold"

    @property
    def code(self) -> str:
        """The log line's code: FLAGGED or HELD."""
        return CODE[self.kind]

    def line(self) -> str:
        """The finding as one line of the log (what ``str(finding)`` is)."""
        return str.__str__(self)

    def fields(self) -> dict[str, str]:
        return {"kind": self.kind, "rule": self.rule, "where": self.where, "evidence": self.evidence}


def flag(rule: str, where: str, evidence: str) -> Finding:
    return Finding("flag", rule, where, evidence)


def hold(rule: str, where: str, evidence: str) -> Finding:
    return Finding("hold", rule, where, evidence)


def review_rows(assignment: str, findings: Mapping[str, Iterable[Any]]) -> list[dict[str, str]]:
    """Rows for the instructor's review file: student, assignment, kind (flag or hold), rule, where, evidence.

    Plain strings (findings read back from a log) become flags of rule ``unknown``.
    """
    rows = []
    for student, found in sorted(findings.items()):
        for f in found:
            f = f if isinstance(f, Finding) else Finding("flag", "unknown", "", str(f).removeprefix(PREFIX["flag"]))
            rows.append({"student": student, "assignment": assignment, "reason": f.line().removeprefix(PREFIX[f.kind]),
                         **f.fields()})
    return rows

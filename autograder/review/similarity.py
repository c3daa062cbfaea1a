"""Copied code: a learner's function against the engine's and against classmates', by shared fingerprints.

Each live definition (:mod:`.definitions`) becomes winnowed fingerprints
(:mod:`.tokens`, :mod:`.fingerprints`); a submission makes at most
``MAX_TOKENS`` tokens, and a cut is itself a finding. Fingerprints of what
every learner is handed (:mod:`.base`) never count, and a function with fewer
than ``MIN_PRINTS`` left is not compared at all: short functions look alike by
necessity.

* **The engine.** A function is flagged when at least ``ENGINE_SHARE`` of its
  fingerprints occur in one of gpipe_core's blocked functions, or in the
  grader's own code that would solve the assignment (07's puzzle search, see
  :func:`.base.grader_code`), or it holds that share of that function's,
  *and* at least ``ENGINE_MARGIN`` of them are the engine's and not the
  course's published solution's. Where the solution
  follows the engine closely (02's partitioner, 07's ZB-H1), code written from
  the notebook's recipe matches both alike and is not flagged; a pasted engine
  function carries the engine's own lines (its checks, its helpers' calls).
* **Classmates.** The published solution is subtracted too, and so is every
  fingerprint held by more than a third of the class (and at least 3
  students): a canonical short function written by many is nobody's copy. The
  rest go into one inverted index (fingerprint -> functions holding it), so
  the cost grows with the fingerprints shared, never with all pairs.

The thresholds sit between what was measured (2026-12, this repository):
24 honest solution sets in different styles (``autograder/selftest/``) share
at most 29% of a function's fingerprints with an engine function (0 or 1 of
them engine-only) and at most 22% (4 fingerprints) with a classmate; copies
of the engine renamed, reordered and padded with dead statements share 100%,
with 5 to 26 engine-only fingerprints.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from .base import engine, given, published
from .definitions import Definition
from .findings import Finding, flag
from .fingerprints import kgrams, winnow
from .tokens import Budget, Tally, function_tokens

MAX_TOKENS = 20_000  # per submission: beyond, the definitions are cut (and that is a finding)
MIN_PRINTS = 8  # fingerprints left after subtracting the base, below which a function is not compared
ENGINE_SHARE = 0.7  # share of a function's fingerprints found in one engine function
ENGINE_MARGIN = 4  # of them the engine's and not the published solution's
CLASS_SHARE = 0.6  # share of the smaller function's fingerprints found in a classmate's
CLASS_MIN_SHARED = 8
COMMON_SHARE, COMMON_MIN = 1 / 3, 3  # held by more than this share of the class, and this many: common


@dataclass
class Prints:
    """One definition's fingerprints: winnowed (hash -> source line) and every k-gram."""

    definition: Definition
    prints: dict[int, int]
    grams: frozenset[int]


@dataclass
class Submission:
    functions: list[Prints] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def fingerprint(definitions: list[Definition], tally: Tally | None = None) -> Submission:
    """Fingerprints of ``definitions`` within ``MAX_TOKENS`` tokens in all; a cut is a finding naming the size."""
    budget = Budget(MAX_TOKENS, tally or Tally())
    out = Submission()
    for i, d in enumerate(definitions):
        stream = function_tokens(d.node, budget)
        grams = kgrams(stream.tokens)
        picked = winnow(grams)
        out.functions.append(Prints(d, {h: stream.lines[p] for h, p in picked.items()}, frozenset(grams)))
        if budget.left < 0:
            rest = ", ".join(x.name for x in definitions[i + 1:][:5])
            span = (getattr(d.node, "end_lineno", None) or d.node.lineno) - d.node.lineno + 1
            last = stream.lines[-1] if stream.lines else d.node.lineno
            out.findings.append(flag("size", d.where, f"{span:,} lines long: the definitions exceed {MAX_TOKENS:,} "
                                     f"tokens, compared up to line {last}" + (f", not {rest}" if rest else "")))
            break
    return out


def _lines(prints: dict[int, int], shared: set[int]) -> str:
    lines = sorted({prints[h] for h in shared})
    return f"line {lines[0]}" if len(lines) == 1 else f"lines {lines[0]}-{lines[-1]}"


def engine_findings(assignment: str, sub: Submission) -> list[Finding]:
    """Functions more like gpipe_core's own than the course's solution (see the module docstring)."""
    base, solution = given(assignment), published(assignment)
    out = []
    for f in sub.functions:
        mine = {h: ln for h, ln in f.prints.items() if h not in base}
        if len(mine) < MIN_PRINTS:
            continue
        for ref in engine(assignment):
            shared = {h for h in mine if h in ref.grams}
            theirs = ref.prints - base  # the engine function held inside the learner's (the other direction)
            held = len(theirs & f.grams) / len(theirs) if len(theirs) >= MIN_PRINTS else 0.0
            share = max(len(shared) / len(mine), held)
            only_engine = {h for h in shared if h not in solution}
            if share >= ENGINE_SHARE and len(only_engine) >= ENGINE_MARGIN:
                out.append(flag("copied-engine", f.definition.where,
                                f"{share:.0%} alike with {ref.origin} {ref.name}: {len(shared)} of its {len(mine)} "
                                f"fingerprints occur there, {len(only_engine)} of them in no course material "
                                f"({_lines(mine, only_engine)})"))
    return out


def class_findings(assignment: str, subs: Mapping[str, Submission],
                   tally: Tally | None = None) -> dict[str, list[Finding]]:
    """Functions that share most of their fingerprints with a classmate's (see the module docstring)."""
    tally = tally or Tally()
    base = given(assignment) | published(assignment)
    holders: Counter[int] = Counter()
    for sub in subs.values():
        holders.update({h for f in sub.functions for h in f.prints if h not in base})
    cutoff = max(COMMON_MIN, int(len(subs) * COMMON_SHARE) + 1)
    common = {h for h, n in holders.items() if n >= cutoff}
    index: dict[int, list[tuple[str, int]]] = defaultdict(list)
    kept: dict[tuple[str, int], dict[int, int]] = {}
    for student, sub in subs.items():
        for i, f in enumerate(sub.functions):
            mine = {h: ln for h, ln in f.prints.items() if h not in base and h not in common}
            if len(mine) >= MIN_PRINTS:
                kept[student, i] = mine
                for h in mine:
                    index[h].append((student, i))
    out: dict[str, list[Finding]] = {s: [] for s in subs}
    for (student, i), mine in kept.items():
        shared: Counter[tuple[str, int]] = Counter()
        for h in mine:
            tally.spent += len(index[h])
            shared.update(key for key in index[h] if key[0] != student)
        for (other, j), n in shared.items():
            smaller = min(len(mine), len(kept[other, j]))
            if n >= CLASS_MIN_SHARED and n / smaller >= CLASS_SHARE:
                theirs = subs[other].functions[j].definition
                both = {h for h in mine if h in kept[other, j]}
                out[student].append(flag("copied-classmate", subs[student].functions[i].definition.where,
                                         f"{n / smaller:.0%} alike with {other}'s {theirs.name}: {n} fingerprints "
                                         f"in common, in no course material and rare in the class "
                                         f"({_lines(mine, both)}; theirs {_lines(kept[other, j], both)})"))
    return out

"""The hostile class (autograder/selftest/hostile.py), graded in the same run as the honest one.

Each cheat or attack scores at most what its honest work earns (copying the
engine's source may instead earn its points with a FLAGGED line; code that
reaches for what the probe's harness measures with is HELD: 0 until an
instructor looks), its log line
names what happened where the hostile module says so, honest classmates keep
every point, the repository is unchanged, the gradebook and grades.csv hold
what the grader wrote, no secret reaches a feedback page, and no sandbox
process is left running.
"""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from classroom import ROOT, Graded, attacked_files, lost, sandbox_processes, workspace

from autograder.sandbox.launch import sandbox_available
from autograder.selftest import hostile

pytestmark = [pytest.mark.timeout(1800),
              pytest.mark.skipif(not sandbox_available(), reason="needs the sandbox: make bubblewrap")]


def attacks() -> list[str]:
    return ["fake-equality", "int-subclass", "tensor-subclass", "patch-torch", "patch-builtins", "input-transformer",
            "cell-hooks", "swap-guard", "clone-code", "reload-engine", "call-engine", "sys-modules", "forge-probe",
            "hard-coded", "engine-copy", "read-solutions", "copy-classmate", "extra-credit", "zero-classmates",
            "overwrite-classmate", "edit-repo", "kill-everything", "detached-daemon", "memory-tree", "fork-bomb",
            "disk-flood", "output-flood", "network", "symlink-solutions", "symlink-passwd", "forged-timestamp",
            "forged-grade-cell", "forged-checksum"]


def attacks_two() -> list[str]:
    """The second hostile class (autograder/selftest/hostile_two.py)."""
    return ["load-decorator", "load-default", "load-metaclass", "load-init-subclass", "load-class-getitem",
            "load-enum", "padded-copy", "decoy-first", "meter-decorator-04", "meter-patch-04", "probe-tasks-04",
            "gc-nonce", "forge-all-and-exit", "numpy-tofile", "reset-timer", "deep-return", "huge-return",
            "spoofed-lines", "kill-harness", "parent-fds", "leftover-thread", "private-place-03",
            "sibling-schedule-03", "store-subclass-04", "lookup-table", "parameter-counts", "encoded-exec",
            "metadata-string", "huge-function", "scripted-page", "disk-floods"]


def test_the_hostile_classes_are_complete(graded: Graded) -> None:
    assert sorted(a.student for a in graded.attacks) == sorted(attacks() + attacks_two())
    assert len(attacks()) >= 25 and len(attacks_two()) >= 30


@pytest.mark.parametrize("student", attacks() + attacks_two())
def test_each_attack_scores_at_most_what_its_work_earns(student: str, graded: Graded) -> None:
    attack = next(a for a in graded.attacks if a.student == student)
    cells = graded.cells.get((attack.assignment, student))
    line = graded.lines.get((attack.assignment, student), "")
    assert cells is not None, f"{student} was not graded: {graded.output[-2000:]}"
    passed = set(cells) - lost(graded, attack.assignment, student)
    why = f"{student} ({attack.description}): {line}"
    if attack.flagged_instead and "FLAGGED" in line:
        return  # copied engine code may keep its points, but only flagged for review
    assert not attack.held or "HELD" in line, f"its tampering was not detected (no HELD); {why}"
    if "HELD" in line:  # its points wait for the instructor: none counted meanwhile
        assert graded.scores[(attack.assignment, student)][0] == 0, f"a held submission scored; {why}"
        assert passed == set(), why
        return
    assert passed <= attack.earns, f"passed {sorted(passed - attack.earns)} it did not earn; {why}"
    if attack.keeps:
        assert passed == attack.earns, f"lost honest points {sorted(attack.earns - passed)}; {why}"
    assert not attack.flagged_instead or passed == set(), f"copied engine code unflagged; {why}"
    for code in attack.codes:
        assert code in line, f"the log line should say {code}; {why}"


def test_honest_classmates_keep_every_point(graded: Graded) -> None:
    for (a, s), (score, top) in graded.scores.items():
        if s == "correct":
            assert score == top > 0, f"{a}: the correct submission lost points: {graded.lines.get((a, s))}"


def test_the_repository_is_unchanged(graded: Graded) -> None:
    """The attacked files carry no learner's line (teammates may edit them meanwhile, so not byte-equal)."""
    assert not (ROOT / "pwned.txt").exists(), "a learner wrote a file into the repository"
    for name, data in attacked_files().items():
        assert not data.endswith(b"\nraise SystemExit(1)\n"), f"{name} was rewritten by a learner"
        assert graded.repo_before[name] == b"" or data != b"", f"{name} was deleted"


def test_nothing_is_left_running_and_grades_csv_stays_the_graders(env: dict[str, str], graded: Graded) -> None:
    assert graded.left_running == [], f"sandbox processes alive after `all`: {graded.left_running}"
    assert sandbox_processes() == []
    with (workspace(env) / "grades.csv").open() as fh:
        rows = {(r["assignment"], r["student_id"]): float(r["score"]) for r in csv.DictReader(fh)}
    wrong = [key for key, (score, _) in graded.scores.items() if rows.get(key) != score]
    assert not wrong, f"grades.csv differs from the gradebook for {wrong}"


def test_feedback_carries_no_solution_no_hidden_test_and_no_host_file(env: dict[str, str], graded: Graded) -> None:
    root = Path(env["GPIPE_INSTRUCTOR_DIR"]) / "feedback"
    source = json.loads((ROOT / "solutions" / hostile.ASSIGNMENT / "partitioner.ipynb").read_text())
    secret = [ln.strip() for c in source["cells"] for ln in "".join(c["source"]).splitlines()
              if "BEGIN HIDDEN TESTS" in ln or "BEGIN SOLUTION" in ln]
    for attack in graded.attacks:
        for page in (root / attack.student / attack.assignment).glob("*.html"):
            text = page.read_text(errors="replace")
            assert "root:x:0:0" not in text, f"{page} shows /etc/passwd"
            assert not any(s in text for s in secret), f"{page} shows solution or hidden-test markers"
            assert page.stat().st_size < 3_000_000, f"{page} is {page.stat().st_size} bytes"


class _Active(HTMLParser):
    """Every tag or attribute of a page that could run script: <script>, on* handlers, script URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "iframe", "object", "embed", "svg", "base"):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            url = (value or "").strip().lower()
            if name.startswith("on") or url.startswith(("javascript:", "vbscript:", "data:text")):
                self.found.append(f"<{tag} {name}={value!r:.40}>")


def test_no_feedback_page_carries_anything_that_runs(env: dict[str, str], graded: Graded) -> None:
    root = Path(env["GPIPE_INSTRUCTOR_DIR"]) / "feedback"
    pages = [p for a in graded.attacks for p in (root / a.student / a.assignment).glob("*.html")]
    assert any("scripted-page" in str(p) for p in pages)
    for page in pages:
        parser = _Active()
        parser.feed(page.read_text(errors="replace"))
        assert not parser.found, f"{page} carries {parser.found[:5]}"


def test_forged_timestamp_and_graded_cell_change_nothing(env: dict[str, str], graded: Graded) -> None:
    stamp = Path(env["GPIPE_INSTRUCTOR_DIR"]) / "submitted" / "forged-timestamp" / hostile.ASSIGNMENT / "timestamp.txt"
    assert not stamp.read_text().startswith("2020"), "the learner's own timestamp.txt was kept"
    tops = {top for (a, s), (_, top) in graded.scores.items() if a == hostile.ASSIGNMENT}
    assert len(tops) == 1, f"a forged graded cell changed the assignment's maximum: {tops}"


def test_flagged_and_held_submissions_are_in_the_review_csv(env: dict[str, str], graded: Graded) -> None:
    path = Path(env["GPIPE_INSTRUCTOR_DIR"]) / f"review-{hostile.ASSIGNMENT}.csv"
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    for kind, code in (("flag", "FLAGGED"), ("hold", "HELD")):
        marked = {s for (a, s), line in graded.lines.items() if a == hostile.ASSIGNMENT and code in line}
        assert {r["student"] for r in rows if r["kind"] == kind} == marked, (kind, rows[:5])
    assert "engine-copy" in {r["student"] for r in rows if r["kind"] == "flag"}

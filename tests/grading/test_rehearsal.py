"""A whole term in miniature (issue 28, item 5): course file, Canvas zips, grading, both exports, regrades.

Five students hand in assignment 01 (12 points: test_split 4, test_weights 2,
test_accumulate 6) through three Canvas "download submissions" zips, against
a course file with a due date of 2027-01-15T23:59Z, 10% of the points per
started day late, at most 30%, 0 after 96 h, and a 48 h extension for cy:

* ada: on time (12; Canvas did not mark it late: the due date is its time);
* bob: late, Canvas's time 2027-01-17T01:00Z from ``--times`` (25 h 1 min: two days, 20% = 2.4: 9.6);
* cy: 2027-01-17T10:00Z from ``--times``, late for Canvas but inside her extension (12);
* dan: the untouched release on time, then the solution marked late and collected at 2027-01-16T06:00Z
  without a Canvas time (6 h 1 min: one day, 1.2: 10.8), then a third hand-in after the cut-off (kept, not
  graded);
* eve: the solution, first handed in after the cut-off (marked late, collected 2027-01-21T00:00Z: 0).

Then the judge is "fixed" (a copy of judge 01 in a temporary folder, used through ``GPIPE_JUDGE_DIR``,
makes everyone lose test_weights: 2 points), ``regrade`` records each change, a second regrade changes
nothing, and regrading one student with the repository's judge changes only her.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from pathlib import Path

import nbformat
import pytest
from classroom import cli, parse_lines, read_gradebook

from autograder.cycle import record
from autograder.sandbox.launch import sandbox_available
from autograder.selftest.fakeclass import solved

pytestmark = [pytest.mark.timeout(1800),  # a watchdog: twelve gradings take a minute or two on a quiet machine
              pytest.mark.sandbox, pytest.mark.slow,
              pytest.mark.skipif(not sandbox_available(), reason="needs the sandbox: make bubblewrap")]
A, NB = "01_microbatching", "microbatching"
ROOT = Path(__file__).resolve().parents[2]
COURSE = f"""
roster = "roster.csv"
[late]
policy = "per_day"
percent = 10
cap = 30
cutoff_hours = 96
[assignments.{A}]
due = 2027-01-15T23:59:00Z
canvas = "01 Micro-batching (1001)"
[extensions.cy]
{A} = 48
"""
ROSTER = ("student_id,canvas_id,name,sis_user_id,sis_login_id,section\n"
          + "".join(f'{s},{100 + i},{s.title()},S{i},{s}@uni.edu,Section 1\n'
                    for i, s in enumerate(["ada", "bob", "cy", "dan", "eve"], start=1)))
FIX = '''

_old_weights = CHECKS.pop("test_weights")


@CHECKS("test_weights")
def weights_fixed(ask, rng):
    verify = _old_weights(ask, rng)

    def stricter() -> None:
        verify()
        expect(False, "the fixed judge wants the weights of an empty batch refused too")

    return stricter
'''


def canvas_zip(path: Path, entries: dict[str, object]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, nb in entries.items():
            archive.writestr(f"{name}_{NB}.ipynb", nbformat.writes(nb))
    return path


def test_a_whole_term(tmp_path: Path, released: Path) -> None:
    (tmp_path / "roster.csv").write_text(ROSTER)
    (tmp_path / "course.toml").write_text(COURSE)
    env = dict(os.environ, GPIPE_INSTRUCTOR_DIR=str(tmp_path / "instructor"), PYTHONUNBUFFERED="1",
               GPIPE_COURSE_FILE=str(tmp_path / "course.toml"))
    good = solved(A, NB, released)
    answered = solved(A, NB, released)
    answered.cells[-1].source = "hours_spent = 2.5"  # the closing question (cycle/effort.py): only ada answers
    blank = nbformat.read(released / A / f"{NB}.ipynb", as_version=4)
    edited = nbformat.read(released / A / f"{NB}.ipynb", as_version=4)
    edited.cells.append(nbformat.v4.new_markdown_cell("too late"))
    (tmp_path / "times.csv").write_text("canvas_id,submitted_at\n102,2027-01-17T01:00:00Z\n103,2027-01-17T10:00:00Z\n")
    first = canvas_zip(tmp_path / "first.zip", {"ada_101_1": answered, "bob_late_102_2": good, "cy_late_103_3": good,
                                                "dan_104_4": blank})
    cli("collect", first, "--times", tmp_path / "times.csv", "--at", "2027-01-18T12:00:00Z", env=env)
    cli("collect", canvas_zip(tmp_path / "second.zip", {"dan_late_104_5": good}), "--at", "2027-01-16T06:00:00Z",
        env=env)
    third = cli("collect", canvas_zip(tmp_path / "third.zip", {"dan_late_104_6": edited, "eve_late_105_7": good}),
                "--at", "2027-01-21T00:00:00Z", env=env).stdout
    assert "hand-in 2 of 3 counts" in third and "hand-in(s) 3 came after the cut-off" in third
    instructor = tmp_path / "instructor"
    assert sorted(p.name for p in (instructor / "handins" / "dan" / A).iterdir()) == ["1", "2", "3"]

    lines = parse_lines(cli("autograde", "--jobs", "2", env=env).stdout)
    final = {"ada": 12.0, "bob": 9.6, "cy": 12.0, "dan": 10.8, "eve": 0.0}
    penalty = {"ada": 0.0, "bob": 2.4, "cy": 0.0, "dan": 1.2, "eve": 12.0}
    for s, score in final.items():
        assert lines[(A, s)].split("  ")[2] == f"{score:g}/12", lines[(A, s)]
        assert ("LATE" in lines[(A, s)]) == (s in ("bob", "dan", "eve")), lines[(A, s)]
        found = json.loads((instructor / "records" / A / f"{s}.json").read_text())
        record.validate(found)
        assert (found["raw"], found["late"]["penalty"], found["final"], found["max"]) == \
            (12.0, penalty[s], score, 12.0), (s, found)
        assert {g: c["points"] for g, c in found["checks"].items()} == {"test_split": 4.0, "test_weights": 2.0,
                                                                         "test_accumulate": 6.0}
        assert isinstance(found["seed"], int) and set(found["environment"]) >= {"python", "torch", "device",
                                                                                "package"}
    assert read_gradebook(env)[1] == {(A, s): (12.0, 12.0) for s in final}  # raw in the gradebook ...
    hours = {s: json.loads((instructor / "records" / A / f"{s}.json").read_text())["late"]["hours_late"]
             for s in final}
    assert hours == {"ada": 0.0, "bob": 25.02, "cy": 0.0, "dan": 6.02, "eve": 120.02}
    assert json.loads((instructor / "records" / A / "eve.json").read_text())["late"]["past_cutoff"] is True

    cli("feedback", env=env)
    page = (instructor / "feedback" / "bob" / A / f"{NB}.html").read_text()
    assert "Raw score 12, late penalty 2.4, final score 9.6" in page and "Late submission penalty" in page
    exported = cli("export", tmp_path / "grades.csv", env=env).stdout
    assert f"hours spent on {A}: 1 of 5 answered, median 2.5 h" in exported, exported
    cli("export", tmp_path / "canvas.csv", "--format", "canvas", env=env)
    with (tmp_path / "grades.csv").open() as fh:
        rows = {r["student_id"]: r for r in csv.DictReader(fh) if r["assignment"] == A}
    assert {s: (float(r["raw_score"]), float(r["late_penalty"]), float(r["score"])) for s, r in rows.items()} == \
        {s: (12.0, penalty[s], final[s]) for s in final}
    assert {s: r["hours_spent"] for s, r in rows.items()} == {"ada": "2.5", "bob": "", "cy": "", "dan": "", "eve": ""}
    assert canvas_rows(tmp_path / "canvas.csv") == {"Points Possible": "12", **{s: f"{v:g}" for s, v in final.items()}}

    judges = tmp_path / "judges"
    judges.mkdir()
    (judges / f"{A}.py").write_text((ROOT / "autograder" / "judge" / f"{A}.py").read_text() + FIX)
    fixed = dict(env, GPIPE_JUDGE_DIR=str(judges))
    before = {s: (instructor / "feedback" / s / A / f"{NB}.html").stat().st_mtime_ns for s in final}
    out = cli("regrade", "--reason", "test_weights: empty batches", "--jobs", "2", env=fixed).stdout
    history = list(csv.DictReader((instructor / "regrades.csv").open()))
    after = {"ada": 10.0, "bob": 7.6, "cy": 10.0, "dan": 8.8}  # 10 raw less the same penalties; eve stays 0
    assert [(r["student"], float(r["old_score"]), float(r["new_score"])) for r in history] == \
        [(s, final[s], after[s]) for s in sorted(after)], out
    assert {r["reason"] for r in history} == {"test_weights: empty batches"}
    changed = {s for s in final if (instructor / "feedback" / s / A / f"{NB}.html").stat().st_mtime_ns != before[s]}
    assert changed == set(final), "every student's checks changed (eve's too: 0 either way): all pages rebuilt"
    assert "the fixed judge wants" in (instructor / "feedback" / "ada" / A / f"{NB}.html").read_text()

    cli("regrade", A, "--student", "ada", "--reason", "again", env=fixed)  # idempotent: nothing changes
    assert len(list(csv.DictReader((instructor / "regrades.csv").open()))) == len(after)
    before = {s: (instructor / "feedback" / s / A / f"{NB}.html").stat().st_mtime_ns for s in final}
    cli("regrade", A, "--student", "ada", "--reason", "judge reverted", env=env)
    history = list(csv.DictReader((instructor / "regrades.csv").open()))
    assert [(r["student"], r["old_score"], r["new_score"], r["reason"]) for r in history[len(after):]] == \
        [("ada", "10", "12", "judge reverted")]
    assert {s for s in final if (instructor / "feedback" / s / A / f"{NB}.html").stat().st_mtime_ns
            != before[s]} == {"ada"}
    cli("export", tmp_path / "canvas.csv", "--format", "canvas", env=env)
    assert canvas_rows(tmp_path / "canvas.csv")["ada"] == "12" and canvas_rows(tmp_path / "canvas.csv")["bob"] == "7.6"


def canvas_rows(path: Path) -> dict[str, str]:
    """Canvas's import file: the header checked, then the assignment's column by student (by the SIS login)."""
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "01 Micro-batching (1001)"]
    assert rows[1][:5] == ["Points Possible", "", "", "", ""]
    return {"Points Possible": rows[1][5], **{r[3].split("@")[0]: r[5] for r in rows[2:]}}

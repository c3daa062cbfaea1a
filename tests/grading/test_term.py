"""The course file, the late policy, the roster, Canvas's zip and export, hand-ins and the record's schema.

Fast: nothing here grades (``test_rehearsal.py`` runs a whole term through the
sandbox). Every error must name the file's line and the fix; every penalty is
worked out by hand in the test.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import jsonschema
import pytest

from autograder.cycle import handins, lms, record
from autograder.cycle import term as terms
from autograder.cycle.collect import collect

ROOT = Path(__file__).resolve().parents[2]
A, B = "01_microbatching", "02_partitioner"
UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "course.toml"
    path.write_text(text)
    return path


def test_the_example_course_file_is_valid_and_says_what_it_means() -> None:
    term = terms.load(ROOT / "autograder" / "course.example.toml")
    assert term is not None and term.due[A] == at("2027-01-15T23:59:00Z")
    assert term.policy(A) == terms.LatePolicy("per_day", 10.0, 30.0, 96.0)
    assert term.policy(B) == terms.LatePolicy("per_hour", 1.0, 20.0, None)
    assert term.due_for("ada", A) == at("2027-01-17T23:59:00Z") and term.due_for("bob", A) == term.due[A]
    assert term.due_for("ada", B) == term.due[B] + dt.timedelta(hours=48)
    assert term.cutoff_for("ada", A) == at("2027-01-21T23:59:00Z") and term.cutoff_for("ada", B) is None
    assert term.canvas == {A: "01 Micro-batching (1001)"}
    assert [p.student for p in lms.read_roster(term.roster).values()] == ["ada", "bob"]


@pytest.mark.parametrize(("text", "line", "words"), [
    ("[late]\npolicy = 'per_week'\n", 2, "is not a policy"),
    ("[late]\npolicy = 'per_day'\n", 1, "percent: missing"),
    ("[late]\npolicy = 'per_day'\npercent = 120\n", 3, "from 0 to 100"),
    ("deadline = 1\n", 1, "unknown key"),
    (f"[assignments.{A}]\n# note\ndue = 2027-01-15T23:59:00\n", 3, "without a time zone"),
    (f"[assignments.{A}]\ndue = '2027-01-15'\n", 2, "not a date and time"),
    (f"[assignments.{A}]\ncanvas = 'x'\n", 1, "due: missing"),
    (f"[assignments.{A}]\ndue = 2027-01-15T23:59:00Z\ndeu = 1\n", 3, "unknown key"),
    (f"[assignments.{A}]\ndue = 2027-01-15T23:59:00Z\nlate = {{ policy = 'per_day', percent = -1 }}\n", 3,
     "percent: -1"),
    ("# a comment\n[assignments.99_nothing]\ndue = 2027-01-15T23:59:00Z\n", 2, "no such assignment"),
    (f"[assignments.{A}]\ndue = 2027-01-15T23:59:00Z\n[extensions.ada]\n{B} = 24\n", 4, "no due date"),
    (f"[assignments.{A}]\ndue = 2027-01-15T23:59:00Z\n[extensions.ada]\n{A} = -5\n", 4, "more than 0"),
    (f"[assignments.{A}]\ndue = 2027-01-15T23:59:00Z\n[extensions]\n'a b' = {{ {A} = 5 }}\n", 4,
     "not a student id"),
    ("roster = 'nowhere.csv'\n", 1, "does not exist"),
    ("[late\npolicy = 1\n", 1, "must be TOML"),
])
def test_a_bad_course_file_names_its_line_and_the_fix(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(terms.TermError) as err:
        terms.load(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}:") or f"line {line}" in message, message
    assert words in message, message


def test_no_course_file_means_nothing_is_late(tmp_path: Path) -> None:
    assert terms.load(tmp_path / "absent.toml") is None


# due 2027-01-15T23:59Z, 14 points: per_day 10% (1.4 points) per started day, at most 30% (4.2), 0 after 96 h
POLICY = f"""
[late]
policy = "per_day"
percent = 10
cap = 30
cutoff_hours = 96
[assignments.{A}]
due = 2027-01-15T23:59:00Z
[extensions.ada]
{A} = 48
"""


@pytest.mark.parametrize(("student", "when", "penalty", "final", "past"), [
    ("bob", "2027-01-15T23:59:00Z", 0.0, 12.0, False),  # on the dot: on time
    ("bob", "2027-01-16T00:00:00Z", 1.2, 10.8, False),  # one minute: one started day, 10% of 12 points
    ("bob", "2027-01-17T01:59:00Z", 2.4, 9.6, False),  # 26 h: two days
    ("bob", "2027-01-19T11:59:00Z", 3.6, 8.4, False),  # 84 h: four days = 40%, capped at 30%
    ("bob", "2027-01-20T00:00:00Z", 12.0, 0.0, True),  # 96 h 1 min: past the cut-off
    ("ada", "2027-01-17T23:00:00Z", 0.0, 12.0, False),  # 47 h late for bob, on time with ada's 48 h
    ("ada", "2027-01-18T00:00:00Z", 1.2, 10.8, False),  # the extension moves the due date ...
    ("ada", "2027-01-21T23:00:00Z", 3.6, 8.4, False),  # ... and the cut-off with it
])
def test_the_late_policy_by_hand(tmp_path: Path, student: str, when: str, penalty: float, final: float,
                                 past: bool) -> None:
    term = terms.load(write(tmp_path, POLICY))
    late = term.apply(student, A, 12.0, 12.0, at(when))
    assert (late.raw, late.penalty, late.final, late.past_cutoff) == (12.0, penalty, final, past)
    assert bool(late.reason) == (penalty > 0 or past)


def test_a_penalty_never_takes_more_than_the_score_and_none_keeps_it(tmp_path: Path) -> None:
    term = terms.load(write(tmp_path, POLICY))
    assert term.apply("bob", A, 1.0, 12.0, at("2027-01-18T00:00:00Z")).final == 0.0  # 3.6 > 1 point
    free = terms.load(write(tmp_path, POLICY.replace('"per_day"', '"none"')))
    late = free.apply("bob", A, 12.0, 12.0, at("2027-01-17T00:00:00Z"))
    assert (late.penalty, late.final) == (0.0, 12.0) and "no late penalty" in late.reason
    assert free.apply("bob", A, 12.0, 12.0, at("2027-01-21T00:00:00Z")).final == 0.0  # the cut-off still holds


def test_a_roster_error_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    for body, line, words in (("ada,12345\nbob,12345\n", 3, "listed twice"), ("ada,12345\nada,2\n", 3, "twice"),
                              ("ada,x1\n", 2, "not a Canvas user id"), ("a b,1\n", 2, "not a student id")):
        path.write_text("student_id,canvas_id\n" + body)
        with pytest.raises(lms.RosterError, match=rf"roster.csv:{line}: .*{words}"):
            lms.read_roster(path)
    path.write_text("student,id\nada,1\n")
    with pytest.raises(lms.RosterError, match=r"roster.csv:1: the header lacks"):
        lms.read_roster(path)


def canvas_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


NB = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def test_a_canvas_zip_is_read_by_user_id_and_nothing_is_guessed(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text('student_id,canvas_id,name\nada,11,"Lovelace, Ada"\nbob,12,"Builder, Bob"\ncy,13,"Young, Cy"\n')
    people = lms.read_roster(roster)
    owner = {"microbatching.ipynb": A, "partitioner.ipynb": B}
    path = canvas_zip(tmp_path / "s.zip", {
        "lovelaceada_11_901_microbatching.ipynb": NB,
        "builderbob_late_12_902_microbatching-1.ipynb": NB + b" ",  # Canvas's name for a re-upload
        "builderbob_late_12_903_notes.txt": b"x",
        "someone_99_904_microbatching.ipynb": NB,  # not in the roster
        "youngcy_13_905_microbatching.ipynb": NB, "youngcy_13_906_microbatching-2.ipynb": NB,  # two for one
        "wrongname_11_907_partitioner.ipynb": NB,  # ada by id, under another name
        "README.txt": b"not a submission",
    })
    found, refused = lms.read_canvas_zip(path, people, owner, None, 1 << 20)
    got = {(h.student, h.assignment): h for h in found}
    assert sorted(got) == [("ada", A), ("ada", B), ("bob", A)]
    assert not got[("ada", A)].late_marked and got[("bob", A)].late_marked
    assert got[("bob", A)].files == {"microbatching.ipynb": NB + b" "}
    assert ("RENAMED", "microbatching-1.ipynb -> microbatching.ipynb (Canvas's name for a re-upload)") in \
        got[("bob", A)].notes
    assert [c for c, _ in got[("ada", B)].notes] == ["NAME_MISMATCH"]
    text = "\n".join(refused)
    assert "Canvas user 99 (someone) is not in the roster" in text
    assert "cy on 01_microbatching: two files in the zip for the same notebook; not collected" in text
    assert "notes.txt: not a notebook" in text and "README.txt: not a Canvas submission name" in text


def test_hand_ins_are_kept_and_the_latest_before_the_cut_off_counts(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPIPE_INSTRUCTOR_DIR", str(tmp_path / "instructor"))
    monkeypatch.setenv(terms.COURSE_FILE_ENV, str(write(tmp_path, POLICY)))
    folder = tmp_path / "class" / "bob" / A
    folder.mkdir(parents=True)
    submitted = tmp_path / "instructor" / "submitted" / "bob" / A
    for content, when in ((b"1", "2027-01-15T20:00:00Z"), (b"1", "2027-01-16T09:00:00Z"),
                          (b"2", "2027-01-17T09:00:00Z"), (b"3", "2027-01-21T09:00:00Z")):
        (folder / "microbatching.ipynb").write_bytes(content)
        line = collect(tmp_path / "class", at=when)[0]
    kept = handins.hand_ins("bob", A)
    assert [m["time"][:16] for _, m in kept] == ["2027-01-15 20:00", "2027-01-17 09:00", "2027-01-21 09:00"]
    assert (submitted / "microbatching.ipynb").read_bytes() == b"2"  # hand-in 3 came after the cut-off
    assert (submitted / "timestamp.txt").read_text().startswith("2027-01-17 09:00:00")
    assert "hand-in 2 of 3 counts" in line and "hand-in(s) 3 came after the cut-off" in line


def test_a_canvas_zip_collect_takes_times_from_canvas_or_says_what_it_used(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPIPE_INSTRUCTOR_DIR", str(tmp_path / "instructor"))
    monkeypatch.setenv(terms.COURSE_FILE_ENV, str(write(tmp_path, POLICY)))
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,canvas_id\nada,11\nbob,12\ncy,13\n")
    times = tmp_path / "times.csv"
    times.write_text("canvas_id,submitted_at\n13,2027-01-16T10:30:00Z\n")
    path = canvas_zip(tmp_path / "s.zip", {"ada_11_1_microbatching.ipynb": NB, "bob_late_12_2_microbatching.ipynb": NB,
                                           "cy_late_13_3_microbatching.ipynb": NB})
    lines = collect(path, roster=roster, times=times, at="2027-01-18T08:00:00Z")
    meta = {s: handins.hand_ins(s, A)[-1][1] for s in ("ada", "bob", "cy")}
    assert meta["ada"]["time"].startswith("2027-01-17 23:59:00")  # not late: her (extended) due date
    assert meta["bob"]["time"].startswith("2027-01-18 08:00:00") and "LATE_MARKED" in lines[1]
    assert meta["cy"]["time"].startswith("2027-01-16 10:30:00") and meta["cy"]["time_from"] == "lms"
    assert meta["cy"]["lms"] == {"canvas_id": "13", "late_marked": True}
    with pytest.raises(SystemExit, match="needs a roster"):
        monkeypatch.setenv(terms.COURSE_FILE_ENV, str(tmp_path / "none.toml"))
        collect(path)


def test_the_canvas_export_has_canvas_columns_and_a_points_row(tmp_path: Path) -> None:
    people = [lms.Person("bob", "12", "Builder, Bob", "S2", "bob@x", "S1"), lms.Person("ada", "11", "Lovelace, Ada")]
    out = tmp_path / "canvas.csv"
    lms.write_canvas(out, people, {A: "01 Micro-batching (1001)", B: B}, {A: 12.0, B: 13.0},
                     {("ada", A): 10.8, ("bob", A): 12.0, ("bob", B): 5.0})
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows == [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "01 Micro-batching (1001)", B],
                    ["Points Possible", "", "", "", "", "12", "13"],
                    ["Builder, Bob", "12", "S2", "bob@x", "S1", "12", "5"],
                    ["Lovelace, Ada", "11", "", "", "", "10.8", ""]]


def test_the_record_schema_accepts_a_record_and_refuses_a_broken_one() -> None:
    late = terms.Late(12.0, 2.4, 9.6, at("2027-01-15T23:59:00Z"), 26.0, False, "26 h late")
    good = record.build(A, "bob", {"judged": {"test_split": 4.0}, "messages": {"test_split": []}, "seed": 7,
                                   "seconds": 3.2, "timings": {"probe": 1.0}, "held": False,
                                   "environment": {"python": "3.11", "torch": "2", "device": "cpu", "package": "p"}},
                        [("LATE", "26 h late")], {"test_split": (4.0, 4.0), "test_weights": (0.0, 2.0)}, late, "p")
    record.validate(good)
    assert good["status"] == "graded" and good["max"] == 6.0 and good["checks"]["test_weights"]["judged"] is None
    for broken in ({**good, "final": "9.6"}, {**good, "extra": 1}, {k: v for k, v in good.items() if k != "seed"},
                   {**good, "status": "late"}):
        with pytest.raises(jsonschema.ValidationError):
            record.validate(broken)


def test_the_readme_documents_every_field_of_the_record() -> None:
    readme = (ROOT / "autograder" / "README.md").read_text()
    section = readme.split("## The result record", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_.]+)`", section, flags=re.M))
    assert set(record.SCHEMA["properties"]) <= documented, set(record.SCHEMA["properties"]) - documented


def test_regrade_needs_a_reason_and_a_known_student(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autograder.cycle.regrade import regrade

    monkeypatch.setenv("GPIPE_INSTRUCTOR_DIR", str(tmp_path / "instructor"))
    (tmp_path / "instructor" / "submitted" / "ada" / A).mkdir(parents=True)
    with pytest.raises(SystemExit, match="needs --reason"):
        regrade([A], ["ada"], reason=" ")
    with pytest.raises(SystemExit, match=r"no collected submission .* for \['zed'\]"):
        regrade([A], ["ada", "zed"], reason="judge fixed")

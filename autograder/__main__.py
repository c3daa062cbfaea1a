"""``python -m autograder``: the instructor's one command for the nbgrader cycle.

Run it from the repository root. Subcommands (details in autograder/README.md):

    release  [ASSIGNMENT ...]            solutions/ -> notebooks/ (nbgrader generate_assignment)
    check    [ASSIGNMENT ...]            solutions pass every test; released notebooks fail every test
    collect  FOLDER|ZIP [--roster R]     a folder or a Canvas zip -> instructor/handins/ and submitted/
    autograde [ASSIGNMENT ...]           grade collected submissions under limits, one log line per student
    feedback [ASSIGNMENT ...]            HTML feedback per student in instructor/feedback/
    export   [grades.csv] [--format canvas]  the result records as a CSV (generic, or Canvas's gradebook import)
    regrade  [ASSIGNMENT ...] [--student S] --reason R   grade again, keep (old, new, reason) in regrades.csv
    course-check [FILE]                  validate the course file (due dates, extensions, late policy, roster)
    all      FOLDER [--out grades.csv]   collect, autograde, feedback and export in one go
    jobs     [ASSIGNMENT ...] [--out F]  the grading jobs still to run, one "assignment student" per line
    job      LIST INDEX                  grade line INDEX of LIST (a Slurm array task, an Indexed Job pod)
    merge    [ASSIGNMENT ...]            every stored result into the gradebook, log lines and review CSVs
    fake-class FOLDER                    write a class of made-up submissions with known grades (to try the grader)
    hostile-class FOLDER                 write a class of cheating and sabotaging submissions (to try the sandbox)
    draws    [ASSIGNMENT ...] [--seeds N] every planted mistake loses its tests at N grading seeds (judge authors)

Learners' code runs only in a bubblewrap sandbox (`make bubblewrap`); `--no-sandbox`
grades without isolation where bubblewrap cannot run (README.md says what is lost).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from . import assignments, course_root
from .sandbox.limits import ENV
from .workspace import Workspace


def _limit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="regrade submissions that were graded already")
    p.add_argument("--cell-timeout", type=int, metavar="S", help="seconds per cell (default: the judge's LIMITS)")
    p.add_argument("--notebook-timeout", type=int, metavar="S", help="seconds per notebook, restarts included")
    p.add_argument("--memory-mb", type=int, metavar="MB", help="kernel address-space limit in MB; 0 turns it off")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="grade N notebooks at once (each sandbox may use up to the memory limit); default 1")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run learners' code without isolation (limits only); see README.md before using it")
    p.add_argument("--run-notebooks", action="store_true",
                   help="run each notebook again in a sandbox for its feedback (slower; gives no score)")


def _apply_limits(args: argparse.Namespace) -> None:
    for flag, field in (("cell_timeout", "cell_timeout_s"), ("notebook_timeout", "notebook_timeout_s"),
                        ("memory_mb", "memory_mb")):
        value = getattr(args, flag)
        if value is not None:
            if value < 0:
                raise SystemExit(f"--{flag.replace('_', '-')} must be 0 or more")
            os.environ[ENV[field]] = str(value)
    if args.no_sandbox:
        from .cycle.workers import NO_SANDBOX

        os.environ[NO_SANDBOX] = "1"
    if args.run_notebooks:
        from .cycle.submission import RUN_NOTEBOOKS

        os.environ[RUN_NOTEBOOKS] = "1"


def _grade(args: argparse.Namespace) -> int:
    from .cycle import autograde

    _apply_limits(args)
    start = time.monotonic()
    if args.jobs < 1:
        raise SystemExit("--jobs must be 1 or more")
    results = autograde(args.assignments, force=args.force, jobs=args.jobs)
    errors = [r for r in results if any(code == "GRADER_ERROR" for code, _ in r.problems)]
    print(f"graded {len(results)} submission(s) in {time.monotonic() - start:.0f} s; "
          f"log lines in {Workspace.from_env().logs}")
    return 2 if errors else 0


def _check(args: argparse.Namespace) -> int:
    from .cycle.check import check

    return check(args.assignments)


def _fake_class(args: argparse.Namespace) -> int:
    from .selftest import fakeclass

    cases = fakeclass.build(args.folder, course_root() / "notebooks", assignments(), args.small)
    for case in cases:
        print(f"{case.assignment}  {case.student}  {case.description}")
    print(f"{len(cases)} submissions in {args.folder}; grade them with: python -m autograder all {args.folder}")
    return 0


def _hostile_class(args: argparse.Namespace) -> int:
    from .selftest import hostile

    cases = hostile.build(args.folder, course_root() / "notebooks", args.assignment)
    for case in cases:
        print(f"{case.assignment}  {case.student}  {case.description}")
    print(f"{len(cases)} submissions in {args.folder}; grade them with: python -m autograder all {args.folder}")
    return 0


def _draws(args: argparse.Namespace) -> int:
    from .cycle import resolve
    from .selftest.seed_sweep import sweep

    if args.seeds < 1:
        raise SystemExit("--seeds must be 1 or more")
    return sweep(resolve(args.assignments), args.seeds, args.first)


def _jobs(args: argparse.Namespace) -> int:
    from .cycle import job_lines

    lines = job_lines(args.assignments, args.force)
    (args.out.write_text if args.out else lambda t: print(t, end=""))("".join(f"{ln}\n" for ln in lines))
    return 0


def _job(args: argparse.Namespace) -> int:
    """Run line ``index`` of a job list (0-based, as SLURM_ARRAY_TASK_ID and JOB_COMPLETION_INDEX count)."""
    from .cycle import run_job

    _apply_limits(args)
    lines = args.list.read_text().splitlines()
    if not 0 <= args.index < len(lines):
        raise SystemExit(f"job {args.index}: {args.list} has {len(lines)} lines (0 to {len(lines) - 1})")
    assignment, student = lines[args.index].split()
    run_job(assignment, student)
    return 0


def _merge(args: argparse.Namespace) -> int:
    from .cycle import merge

    results = merge(args.assignments)
    return 2 if any(code == "GRADER_ERROR" for r in results for code, _ in r.problems) else 0


def _all(args: argparse.Namespace) -> int:
    from . import cycle

    start = time.monotonic()
    cycle.collect(args.folder, args.assignment, args.roster)
    args.assignments = []
    status = _grade(args)
    graded = time.monotonic()
    cycle.feedback(None)
    cycle.export(args.out, args.format, args.roster)
    print(f"all: {graded - start:.0f} s to collect and grade, {time.monotonic() - graded:.0f} s for "
          "feedback and export")
    return status


def _regrade(args: argparse.Namespace) -> int:
    from .cycle.regrade import regrade

    _apply_limits(args)
    if args.jobs < 1:
        raise SystemExit("--jobs must be 1 or more")
    regrade(args.assignments, args.student, args.reason, args.jobs, run=not args.no_run)
    return 0


def _course_check(args: argparse.Namespace) -> int:
    from .cycle.term import report

    return report(args.file)


def _step(name: str, *fields: str) -> object:
    """A handler calling ``cycle.<name>`` with the named arguments; returns 0."""
    def run(args: argparse.Namespace) -> int:
        from . import cycle

        getattr(cycle, name)(*(getattr(args, f) for f in fields))
        return 0
    return run


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.split("\n\n")[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("release", help="generate notebooks/ from solutions/")
    p.add_argument("assignments", nargs="*")
    p.add_argument("--into", type=Path, help="write elsewhere than notebooks/ (e.g. to compare)")
    p.set_defaults(func=_step("release", "assignments", "into"))
    p = sub.add_parser("check", help="solutions pass all tests, released notebooks fail all")
    p.add_argument("assignments", nargs="*")
    p.set_defaults(func=_check)
    p = sub.add_parser("collect", help="import submissions from a folder or a Canvas zip")
    p.add_argument("folder", type=Path)
    p.add_argument("--assignment", help="the assignment of notebooks lying directly in FOLDER/<student>/")
    p.add_argument("--roster", type=Path, help="CSV mapping Canvas user ids to student ids (for a Canvas zip)")
    p.add_argument("--times", type=Path, help="CSV canvas_id,submitted_at: Canvas's submission times")
    p.add_argument("--at", help="collect as of this ISO time (with a zone) instead of now")
    p.set_defaults(func=_step("collect", "folder", "assignment", "roster", "times", "at"))
    p = sub.add_parser("autograde", help="grade the collected submissions")
    p.add_argument("assignments", nargs="*")
    _limit_flags(p)
    p.set_defaults(func=_grade)
    p = sub.add_parser("feedback", help="HTML feedback per student")
    p.add_argument("assignments", nargs="*")
    p.set_defaults(func=_step("feedback", "assignments"))
    p = sub.add_parser("export", help="grades to CSV")
    p.add_argument("csv", nargs="?", type=Path, default=Path("grades.csv"))
    p.add_argument("--format", default="generic", choices=["generic", "canvas"],
                   help="generic (one row per student and assignment) or canvas (its gradebook import)")
    p.add_argument("--roster", type=Path, help="the roster, for --format canvas (default: the course file's)")
    p.set_defaults(func=_step("export", "csv", "format", "roster"))
    p = sub.add_parser("regrade", help="grade again (one student, one assignment or all); history of changes")
    p.add_argument("assignments", nargs="*")
    p.add_argument("--student", action="append", help="only this student (repeat for more)")
    p.add_argument("--reason", required=True, help="what was fixed; written with every change")
    p.add_argument("--no-run", action="store_true", help="merge again only (after a course file change)")
    _limit_flags(p)
    p.set_defaults(func=_regrade)
    p = sub.add_parser("course-check", help="validate the course file and print what it says")
    p.add_argument("file", nargs="?", type=Path, help="default: GPIPE_COURSE_FILE or instructor/course.toml")
    p.set_defaults(func=_course_check)
    p = sub.add_parser("jobs", help="list the grading jobs still to run, one 'assignment student' per line")
    p.add_argument("assignments", nargs="*")
    p.add_argument("--force", action="store_true", help="list graded submissions too")
    p.add_argument("--out", type=Path, help="write the list to this file (for `job`)")
    p.set_defaults(func=_jobs)
    p = sub.add_parser("job", help="grade line INDEX of a job list (one task of a Slurm array or Indexed Job)")
    p.add_argument("list", type=Path)
    p.add_argument("index", type=int)
    _limit_flags(p)
    p.set_defaults(func=_job)
    p = sub.add_parser("merge", help="stored results into the gradebook, log lines and review CSVs")
    p.add_argument("assignments", nargs="*")
    p.set_defaults(func=_merge)
    p = sub.add_parser("fake-class", help="write made-up submissions with known right grades into FOLDER")
    p.add_argument("folder", type=Path)
    p.add_argument("--small", default="02_partitioner", help="assignment that gets the broken submissions")
    p.set_defaults(func=_fake_class)
    p = sub.add_parser("hostile-class", help="write cheating and sabotaging submissions into FOLDER")
    p.add_argument("folder", type=Path)
    p.add_argument("--assignment", default="02_partitioner", help="the assignment they attack")
    p.set_defaults(func=_hostile_class)
    p = sub.add_parser("draws", help="check that each planted mistake loses its tests at many grading seeds")
    p.add_argument("assignments", nargs="*")
    p.add_argument("--seeds", type=int, default=100, help="seeds per planted mistake (default 100)")
    p.add_argument("--first", type=int, default=0, help="the first seed (default 0)")
    p.set_defaults(func=_draws)
    p = sub.add_parser("_worker", help=argparse.SUPPRESS)  # used by autograde: grades submissions named on stdin
    p.set_defaults(func=_step("worker"))
    p = sub.add_parser("all", help="collect, autograde, feedback, export")
    p.add_argument("folder", type=Path)
    p.add_argument("--assignment", help="as for collect")
    p.add_argument("--out", type=Path, default=Path("grades.csv"), help="CSV file to write (default grades.csv)")
    p.add_argument("--roster", type=Path, help="as for collect and export")
    p.add_argument("--format", default="generic", choices=["generic", "canvas"], help="as for export")
    _limit_flags(p)
    p.set_defaults(func=_all)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("traitlets").setLevel(logging.ERROR)  # nbgrader's own log goes to instructor/logs/
    if not assignments():
        raise SystemExit(f"no assignments: {course_root() / 'solutions'} holds no <assignment>/<notebook>.ipynb")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

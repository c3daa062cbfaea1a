"""The grading cycle: release, collect, autograde, feedback, export.

nbgrader keeps the course's bookkeeping (release, the gradebook, feedback
pages); the grading itself is this package's, built so that a class of real,
possibly hostile, learners cannot change a grade but by their work
(autograder/README.md has the threat model):

* ``collect`` copies only the notebooks an assignment consists of from a plain
  folder: regular files only, size-capped, stamped with the instructor's time;
* ``autograde`` screens every submission (missing or unreadable notebooks
  score 0 with a reason), then grades each as an independent job in a worker
  process: the judge scores the learner's definitions through a sandboxed
  probe (``submission.py``, ``probe_runs.py``) and the job stores files only; the
  merge (``jobs.py``) writes the gradebook;
* a term's rules live in one course file (``term.py``: due dates, extensions,
  the late policy, the roster): ``collect`` keeps every hand-in and publishes
  the latest before the cut-off (``handins.py``), also from a Canvas zip
  (``lms.py``); the merge applies the penalty and writes a result record per
  submission (``record.py``) that feedback, both exports and ``regrade``
  (``regrade.py``) read;
* one log line per student and assignment says the score and everything that
  went wrong or was flagged for review, read back from what was stored, so
  the same lines come out again when nothing changed and an interrupted run
  resumes where it stopped.
"""

from .collect import collect
from .course import Course, resolve
from .export import export
from .jobs import autograde, job_lines, merge, plan, run_job
from .publish import feedback
from .release import release
from .result import Result
from .workers import screen, submissions, worker

__all__ = ["Course", "Result", "autograde", "collect", "export", "feedback", "job_lines", "merge", "plan", "release",
           "resolve", "run_job", "screen", "submissions", "worker"]

"""The grading cycle: release, collect, autograde, feedback, export.

nbgrader keeps the course's bookkeeping (release, the gradebook, feedback
pages); the grading itself is this package's, built so that a class of real,
possibly hostile, learners cannot change a grade but by their work
(autograder/README.md has the threat model):

* ``collect`` copies only the notebooks an assignment consists of from a plain
  folder: regular files only, size-capped, stamped with the instructor's time;
* ``autograde`` screens every submission (missing or unreadable notebooks
  score 0 with a reason), then grades each in a worker process: the notebook
  runs in a bubblewrap sandbox for the learner's feedback, and the judge
  scores the learner's definitions through a sandboxed probe
  (``judging.py``, ``probes.py``); only the trusted worker writes the gradebook;
* one log line per student and assignment says the score and everything that
  went wrong or was flagged for review, read back from what was stored, so
  the same lines come out again when nothing changed and an interrupted run
  resumes where it stopped.
"""

from .collect import collect
from .course import Course, Result, release, resolve
from .grade import autograde, screen, submissions, worker
from .publish import export, feedback

__all__ = ["Course", "Result", "autograde", "collect", "export", "feedback", "release", "resolve", "screen",
           "submissions", "worker"]

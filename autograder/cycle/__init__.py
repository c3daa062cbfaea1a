"""The grading cycle: release, collect, autograde, feedback, export.

Each step is a thin layer over nbgrader's own converters, run in this process
with the configuration in ``autograder/nbgrader_config.py``. What this layer
adds is what makes one command trustworthy for a whole class:

* ``collect`` copies only the notebooks an assignment consists of from a plain
  folder (extra files are listed and ignored, so nothing a learner ships can
  shadow ``gpipe_core`` or ``torch`` on the grader's import path);
* ``autograde`` screens every submission first: a missing notebook or one that
  is not valid JSON scores 0 with a reason instead of being skipped or failing
  nbgrader's run; deleted test cells score 0; every other submission is graded
  under limits by :class:`autograder.execute.ResilientExecute`;
* one log line per student and assignment says the score and everything that
  went wrong, read back from the gradebook and the graded notebooks, so the
  same lines come out again when nothing changed (re-running is idempotent).
"""

from .collect import collect
from .course import Course, Result, release, resolve
from .grade import autograde, screen, submissions, worker
from .publish import export, feedback

__all__ = ["Course", "Result", "autograde", "collect", "export", "feedback", "release", "resolve", "screen",
           "submissions", "worker"]

"""nbgrader configuration for the GPipe course.

nbgrader reads this file when it runs with this folder as its working
directory; ``python -m autograder`` (the instructor command, README.md here)
does that for you, or by hand:
``cd autograder && ../.venv/bin/nbgrader generate_assignment 01_microbatching --force``.

Layout: sources are ``solutions/<assignment>/``, released learner notebooks are
``notebooks/<assignment>/``; everything that holds student work or grades
(submitted, autograded, feedback, the SQLite gradebook) lives under
``instructor/``, which git ignores (``GPIPE_INSTRUCTOR_DIR`` moves it).

Execution: cells run in :class:`autograder.execute.ResilientExecute` under the
per-assignment limits of ``autograder/limits.py`` (cell timeout, notebook
timeout, memory), and a kernel killed by a learner's code is restarted instead
of failing the whole submission.
"""

import os
import sys

from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearOutput,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root

from autograder import course_root, instructor_dir  # noqa: E402
from autograder.execute import ResilientExecute  # noqa: E402

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

WORKSPACE = instructor_dir()
os.makedirs(WORKSPACE, exist_ok=True)

c.CourseDirectory.course_id = "gpipe-course"
c.CourseDirectory.root = str(course_root())
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = str(WORKSPACE / "submitted")
c.CourseDirectory.autograded_directory = str(WORKSPACE / "autograded")
c.CourseDirectory.feedback_directory = str(WORKSPACE / "feedback")
c.CourseDirectory.db_url = "sqlite:///" + str(WORKSPACE / "gradebook.db")

# Generated notebooks carry no outputs and no solution code.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.GenerateAssignment.create_assignment = True
c.ClearOutput.enabled = True

# Grading: nbgrader's own chain with Execute replaced by the limited, restart-safe one.
c.Autograde.autograde_preprocessors = [
    ResilientExecute,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
c.Validator.preprocessors = [CheckCellMetadata, ClearOutput, ResilientExecute]
c.Execute.interrupt_on_timeout = True

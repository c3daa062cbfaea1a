"""nbgrader configuration for the GPipe course.

nbgrader reads this file when it runs with this folder as its working
directory; ``python -m autograder`` (the instructor command, README.md here)
does that for you, or by hand:
``cd autograder && ../.venv/bin/nbgrader generate_assignment 01_microbatching --force``.

Layout: sources are ``solutions/<assignment>/``, released learner notebooks are
``notebooks/<assignment>/``; everything that holds student work or grades
(submitted, autograded, feedback, the SQLite gradebook) lives under
``instructor/``, which git ignores (``GPIPE_INSTRUCTOR_DIR`` moves it).

Grading does not use nbgrader's autograde: ``python -m autograder`` runs each
submission in a sandbox and scores it with the judge (``autograder/README.md``;
never run ``nbgrader autograde`` on learners' work, it runs their code as you).
nbgrader's Execute here serves ``python -m autograder check`` only, on the
course's own solutions and releases.
"""

import os
import sys

from nbgrader.preprocessors import CheckCellMetadata, ClearOutput, Execute

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root

from autograder import course_root  # noqa: E402
from autograder.workspace import Workspace  # noqa: E402

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

WORKSPACE = Workspace.from_env()
os.makedirs(WORKSPACE.root, exist_ok=True)

c.CourseDirectory.course_id = "gpipe-course"
c.CourseDirectory.root = str(course_root())
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = str(WORKSPACE.submitted)
c.CourseDirectory.autograded_directory = str(WORKSPACE.autograded)
c.CourseDirectory.feedback_directory = str(WORKSPACE.feedback)
c.CourseDirectory.db_url = "sqlite:///" + str(WORKSPACE.gradebook)

# Generated notebooks carry no outputs and no solution code.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.GenerateAssignment.create_assignment = True
c.ClearOutput.enabled = True

# `python -m autograder check`: the course's own notebooks, run with nbgrader's Execute.
c.Validator.preprocessors = [CheckCellMetadata, ClearOutput, Execute]
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True

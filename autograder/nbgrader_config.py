"""nbgrader configuration for the GPipe course.

Run nbgrader from the repository root with this file, e.g.
``nbgrader generate_assignment 01_microbatching --config autograder/nbgrader_config.py``;
``python -m autograder`` (the instructor command) passes it for you.

Layout: sources are ``solutions/<assignment>/``, released learner notebooks are
``notebooks/<assignment>/``; everything that holds student work or grades
(submitted, autograded, feedback, the SQLite gradebook) lives under
``instructor/``, which git ignores.
"""

import os

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKSPACE = os.path.abspath(os.environ.get("GPIPE_INSTRUCTOR_DIR", os.path.join(ROOT, "instructor")))
os.makedirs(WORKSPACE, exist_ok=True)

c.CourseDirectory.course_id = "gpipe-course"
c.CourseDirectory.root = ROOT
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = os.path.relpath(os.path.join(WORKSPACE, "submitted"), ROOT)
c.CourseDirectory.autograded_directory = os.path.relpath(os.path.join(WORKSPACE, "autograded"), ROOT)
c.CourseDirectory.feedback_directory = os.path.relpath(os.path.join(WORKSPACE, "feedback"), ROOT)
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(WORKSPACE, "gradebook.db")

# Generated notebooks carry no outputs and no solution code.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.GenerateAssignment.create_assignment = True
c.ClearOutput.enabled = True

# Grading: a notebook cell may run at most this long (seconds); per-assignment
# limits are applied by the instructor command (autograder/limits.py).
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True

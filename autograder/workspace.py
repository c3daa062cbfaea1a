"""The instructor folder's layout, named once: where each step of the cycle reads and writes.

Every step finds its files in the instructor folder (``instructor/``, or
``GPIPE_INSTRUCTOR_DIR``). Spelling ``instructor_dir() / "submitted" / ...``
in each module let a path drift between the step that writes it and the step
that reads it; here each path has one name. Paths are derived, never created:
the steps that write make their folders.

Read from the environment at the moment of the call (``Workspace.from_env()``),
so a test or a run that moves ``GPIPE_INSTRUCTOR_DIR`` is followed at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import instructor_dir


@dataclass(frozen=True)
class Workspace:
    """The instructor folder ``root`` and every path the grader keeps in it."""

    root: Path

    @classmethod
    def from_env(cls) -> Workspace:
        """The instructor folder the environment names (``GPIPE_INSTRUCTOR_DIR``, else ``instructor/``)."""
        return cls(instructor_dir())

    @property
    def submitted(self) -> Path:
        """The hand-in that counts, per student and assignment (what grading reads; nbgrader's ``submitted``)."""
        return self.root / "submitted"

    @property
    def autograded(self) -> Path:
        """Each graded job's ``result.json`` and annotated notebooks (nbgrader's ``autograded``)."""
        return self.root / "autograded"

    @property
    def feedback(self) -> Path:
        """The HTML feedback pages (nbgrader's ``feedback``)."""
        return self.root / "feedback"

    @property
    def handins(self) -> Path:
        """Every version a learner handed in, with when it came."""
        return self.root / "handins"

    @property
    def records(self) -> Path:
        """One result record per student and assignment: what the export reads."""
        return self.root / "records"

    @property
    def logs(self) -> Path:
        """nbgrader's logs and the per-student log lines."""
        return self.root / "logs"

    @property
    def generated(self) -> Path:
        """Learner notebooks generated only to register an assignment in the gradebook."""
        return self.root / "generated"

    @property
    def gradebook(self) -> Path:
        return self.root / "gradebook.db"

    @property
    def collect_notes(self) -> Path:
        return self.root / "collect_notes.json"

    @property
    def regrades(self) -> Path:
        return self.root / "regrades.csv"

    @property
    def course_file(self) -> Path:
        """The course file's default place (``GPIPE_COURSE_FILE`` overrides it: ``cycle.term``)."""
        return self.root / "course.toml"

    def submission(self, student: str, assignment: str) -> Path:
        return self.submitted / student / assignment

    def graded(self, student: str, assignment: str) -> Path:
        return self.autograded / student / assignment

    def feedback_of(self, student: str, assignment: str) -> Path:
        return self.feedback / student / assignment

    def handin(self, student: str, assignment: str) -> Path:
        return self.handins / student / assignment

    def record(self, assignment: str, student: str) -> Path:
        return self.records / assignment / f"{student}.json"

    def review_csv(self, assignment: str) -> Path:
        """The instructor's review list of one assignment: flags and holds, one row each."""
        return self.root / f"review-{assignment}.csv"

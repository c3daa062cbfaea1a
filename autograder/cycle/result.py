"""What grading one student's assignment came to, and its log line: what every step reports in.

Screening, the merge and the export speak in :class:`Result`; the log line
(``line()``) is what the instructor reads first, one per student and assignment.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Result:
    """What grading one student's assignment came to; ``line()`` is the per-student log line."""

    assignment: str
    student: str
    score: float = 0.0
    max_score: float = 0.0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (CODE, detail)
    seconds: float | None = None  # time the graded run took, restarts included

    def add(self, code: str, detail: str) -> None:
        self.problems.append((code, detail))

    def line(self) -> str:
        text = "; ".join(f"{code} {detail}" for code, detail in self.problems) or "ok"
        timing = f"  [{self.seconds:g} s]" if self.seconds is not None else ""
        return f"{self.assignment}  {self.student}  {self.score:g}/{self.max_score:g}  {text}{timing}"

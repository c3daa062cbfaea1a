"""check: nbgrader's own validation of the course, before a term starts.

Each solution notebook must pass every test it holds and each released
notebook must fail every one (nbgrader ``validate`` and ``validate --invert``):
a test that an untouched release passes gives points for nothing, and one a
solution fails takes points for nothing.
"""

from __future__ import annotations

from .. import course_root, notebook_names
from .course import Course, resolve


def check(names: list[str]) -> int:
    """Validate with nbgrader: each solution passes all its tests, each released notebook fails all of them."""
    from nbgrader.validator import Validator


    course = Course()
    bad = 0
    for a in resolve(names):
        for nb in notebook_names(a):
            for kind, path, invert in (("solution", course_root() / "solutions" / a / f"{nb}.ipynb", False),
                                       ("released", course_root() / "notebooks" / a / f"{nb}.ipynb", True)):
                if not path.exists():
                    print(f"{a}/{nb} {kind}: missing {path}; run: python -m autograder release {a}")
                    bad += 1
                    continue
                validator = Validator(config=course.config)
                validator.invert = invert
                found = validator.validate(str(path))
                wrong = found.get("passed" if invert else "failed", []) + found.get("changed", []) + found.get(
                    "type_changed", [])
                verdict = "ok" if not wrong else f"{len(wrong)} test cell(s) {'pass' if invert else 'fail'}"
                print(f"{a}/{nb} {kind}: {verdict}")
                for cell in wrong:
                    print("    " + cell.get("source", "").splitlines()[0][:100] if cell.get("source") else "    ?")
                bad += bool(wrong)
    return 1 if bad else 0

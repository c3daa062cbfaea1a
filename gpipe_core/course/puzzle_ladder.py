"""The ladder of assignment 07, drawn per student, and the proven lower bound printed with each puzzle.

Every student climbs the same nine rungs, each needing one step the rungs
below it did not, but with their own sizes, costs and caps: :func:`ladder`
draws them from a hash of the student's id and the rung, so the same id
always gives the same puzzles and another student's tables do not fit. The
ranges are small on purpose: the grader proves each target with an exact
search at grading time (well under a second per puzzle), and the ranges are
chosen so that no schedule a learner already has (1F1B, ZB-H1, interleaved
1F1B) reaches the target (tests/test_puzzles.py checks both over many ids).

Each rung can draw only a few dozen puzzles, so :func:`drawable` lists them
all, and the grader's search has precomputed the target of each one
(:mod:`gpipe_core.course.puzzle_targets`): :func:`known_target` is what the notebook
prints next to the proven :func:`~gpipe_core.course.puzzles.lower_bound` (re-exported
here). A target is a step time to reach, not a table that reaches it; the
grader never reads these numbers, it searches again when it grades.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import puzzle_targets
from .puzzles import Puzzle
from .puzzles import lower_bound as lower_bound  # the notebook and the book import it from here


@dataclass(frozen=True)
class Rung:
    """One rung: its name, what it asks for that the rungs below did not, its points, and how it is drawn."""

    name: str
    story: str
    points: int
    draw: Callable[[random.Random], dict[str, Any]]


FB_COSTS = ((1, 2), (1, 3), (2, 3), (2, 4))  # (F, B)
SPLIT_COSTS = ((1, 1, 1), (1, 2, 1), (2, 1, 1), (1, 1, 2), (2, 2, 1))  # (F, I, W); B = I + W
CHEAP = ((1, 1, 1), (1, 1, 2))  # the costs that keep the exact search of the larger pipelines well under a second


def _fb(r: random.Random) -> dict[str, Any]:
    F, B = r.choice(FB_COSTS)
    return {"F": F, "B": B}


def _split(r: random.Random, costs: tuple[tuple[int, int, int], ...] = SPLIT_COSTS) -> dict[str, Any]:
    F, I, W = r.choice(costs)  # noqa: E741
    return {"F": F, "I": I, "W": W, "split": True}


def _below_k(r: random.Random) -> dict[str, Any]:
    K = r.choice((3, 4))
    return {"K": K, "M": r.randint(K + 2, 2 * K + 1), "cap": K - 1, **_fb(r)}


def _pressure(r: random.Random) -> dict[str, Any]:
    K = r.choice((3, 4))
    return {"K": K, "M": r.randint(K + 1, 7), "cap": K - 1, **_split(r, SPLIT_COSTS if K == 3 else CHEAP)}


def _slow_i(r: random.Random) -> dict[str, Any]:
    slow = ((1, 2, 1), (1, 2, 2), (1, 3, 1), (2, 3, 1), (2, 3, 2))  # I > F and I > W: ZB-H1's gaps widen
    return {"K": 3, "M": r.randint(4, 6), "cap": r.choice((4, 5)), **_split(r, slow)}


def _slow_i_capped(r: random.Random) -> dict[str, Any]:
    return {"K": 3, "M": r.randint(4, 6), "cap": 2, **_split(r, ((1, 2, 1), (1, 2, 2), (1, 3, 1), (2, 3, 1)))}


def _chunks_small(r: random.Random) -> dict[str, Any]:
    return {"K": 2, "M": r.randint(3, 6), "V": 2, "cap": 4, **_fb(r)}  # one below the Megatron order's 5


def _chunks(r: random.Random) -> dict[str, Any]:
    return {"K": 3, "M": r.randint(4, 6), "V": 2, "cap": r.choice((4, 5)), **_fb(r)}


def _v_small(r: random.Random) -> dict[str, Any]:
    return {"K": 2, "M": r.randint(3, 6), "V": 2, "shape": "v", "cap": r.choice((None, 4)), **_split(r)}


def _v(r: random.Random) -> dict[str, Any]:
    return {"K": 3, "M": r.randint(4, 6), "V": 2, "shape": "v", "cap": r.choice((5, 6)), **_split(r, CHEAP)}


def _v_pressure(r: random.Random) -> dict[str, Any]:
    if r.random() < 0.5:
        return {"K": 3, "M": r.randint(4, 5), "V": 2, "shape": "v", "cap": 4, **_split(r, CHEAP)}
    return {"K": 2, "M": r.randint(5, 6), "V": 2, "shape": "v", "cap": 2, **_split(r)}


RUNGS: list[Rung] = [
    Rung("tighter than K", "Fewer slots than devices: 1F1B's first device would hold K micro-batches. Start fewer "
         "forwards, and let the later devices run ahead where their own cap allows.", 2, _below_k),
    Rung("split under pressure", "The backward splits into I (sent upstream at once) and W (whenever you like), "
         "with room for fewer than K: ZB-H1 holds K. When do you pay off a W?", 3, _pressure),
    Rung("slow input gradients", "I costs more than F, so the gaps ZB-H1 leaves are wider than one unit, and there "
         "is memory to spare beyond ZB-H1's K: spend it on forwards that fill those gaps.", 3, _slow_i),
    Rung("slow input gradients under a cap", "The slow I again, now with room for two: every W you defer holds "
         "memory a forward needs.", 3, _slow_i_capped),
    Rung("two chunks, a warm-up", "Two devices, two chunks each (stage s on device s mod 2), under a cap below "
         "what the Megatron order holds.", 2, _chunks_small),
    Rung("two chunks under a cap", "Three devices, two chunks each, and a cap the Megatron order breaks: how many "
         "forwards may each device run before its first backward?", 3, _chunks),
    Rung("the V, a warm-up", "Chunks in a V on two devices: device d holds stages d and 3-d, so the turn at the "
         "bottom stays on one device.", 2, _v_small),
    Rung("the V", "Three devices in a V (device d holds stages d and 5-d), split backward, a moderate cap.", 3, _v),
    Rung("V under pressure", "The V with room for only a few chunk-micro-batches per device: four on three "
         "devices, or two on two.", 4, _v_pressure),
]


PRACTICE_ID = "practice"  # the ladder of a notebook whose STUDENT_ID is not set (the grader always knows the id)


def _rng(student: str, rung: int) -> random.Random:
    digest = hashlib.sha256(f"gpipe-course 07 | {student} | rung {rung}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def draw(student: str, rung: int) -> Puzzle:
    """Rung ``rung`` (1-based) of ``student``'s ladder: the same id always draws the same puzzle."""
    if not isinstance(student, str) or not student.strip():
        raise ValueError(f"a student id is a non-empty string (your id in the course's gradebook), got {student!r}")
    if not 1 <= rung <= len(RUNGS):
        raise ValueError(f"the ladder has rungs 1 to {len(RUNGS)}, not {rung}")
    return _puzzle(rung, RUNGS[rung - 1].draw(_rng(student.strip(), rung)))


def _puzzle(rung: int, params: dict[str, Any]) -> Puzzle:
    spec = RUNGS[rung - 1]
    if params.get("split") and "B" not in params:
        params["B"] = params.get("I", 1) + params.get("W", 1)
    return Puzzle(spec.name, story=spec.story, **params)


class _EveryDraw:
    """A stand-in for random.Random that follows one path of choices; :func:`drawable` walks every path.

    ``choice`` and ``randint`` take each value in turn; ``random()`` takes 0.0 and then a value just
    below 1.0, which covers both sides of any threshold test ``r.random() < t`` with 0 < t < 1, the only
    way the rungs use it.
    """

    def __init__(self, path: list[int]) -> None:
        self.path, self.sizes = path, []

    def _pick(self, n: int) -> int:
        k = self.path[len(self.sizes)] if len(self.sizes) < len(self.path) else 0
        self.sizes.append(n)
        return k

    def choice(self, seq: Any) -> Any:
        return seq[self._pick(len(seq))]

    def randint(self, a: int, b: int) -> int:
        return a + self._pick(b - a + 1)

    def random(self) -> float:
        return (0.0, 1.0 - 1e-9)[self._pick(2)]


def drawable(rung: int) -> list[Puzzle]:
    """Every distinct puzzle rung ``rung`` can draw, whatever the id (in the order of the draw's choices)."""
    if not 1 <= rung <= len(RUNGS):
        raise ValueError(f"the ladder has rungs 1 to {len(RUNGS)}, not {rung}")
    out: dict[Puzzle, None] = {}
    path: list[int] = []
    while True:
        walker = _EveryDraw(path)
        out.setdefault(_puzzle(rung, RUNGS[rung - 1].draw(walker)))  # type: ignore[arg-type]
        path = walker.path + [0] * (len(walker.sizes) - len(walker.path))
        while path and path[-1] + 1 >= walker.sizes[len(path) - 1]:  # the next path, odometer-style
            path.pop()
        if not path:
            return list(out)
        path[-1] += 1


def known_target(p: Puzzle) -> int | None:
    """The target of ``p`` (the best step time under the rules) if the ladder can draw ``p``, else None.

    Precomputed by the grader's exact search (``python -m autograder.judge.puzzle_search --write-targets``),
    keyed by :meth:`Puzzle.statement`; it says how fast, not how.
    """
    return puzzle_targets.TARGETS.get(p.statement())


def ladder(student: str) -> list[Puzzle]:
    """All of ``student``'s puzzles, easiest first."""
    return [draw(student, n) for n in range(1, len(RUNGS) + 1)]


def points() -> list[int]:
    """Each rung's points, easiest first (the notebook's test cells carry the same)."""
    return [r.points for r in RUNGS]

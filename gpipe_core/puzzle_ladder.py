"""The ladder of assignment 07, drawn per student, and the proven lower bound printed with each puzzle.

Every student climbs the same nine rungs, each needing one step the rungs
below it did not, but with their own sizes, costs and caps: :func:`ladder`
draws them from a hash of the student's id and the rung, so the same id
always gives the same puzzles and another student's tables do not fit. The
ranges are small on purpose: the grader proves each target with an exact
search at grading time (well under a second per puzzle), and the ranges are
chosen so that no schedule a learner already has (1F1B, ZB-H1, interleaved
1F1B) reaches the target (tests/test_puzzles.py checks both over many ids).

:func:`lower_bound` is cheap and proven: the largest of three floors, each a
time no table can beat (section 6 of the notebook derives them).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .puzzles import Puzzle


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
    spec = RUNGS[rung - 1]
    params = spec.draw(_rng(student.strip(), rung))
    if params.get("split") and "B" not in params:
        params["B"] = params.get("I", 1) + params.get("W", 1)
    return Puzzle(spec.name, story=spec.story, **params)


def ladder(student: str) -> list[Puzzle]:
    """All of ``student``'s puzzles, easiest first."""
    return [draw(student, n) for n in range(1, len(RUNGS) + 1)]


def lower_bound(p: Puzzle) -> int:
    """A step time no rule-abiding table can beat: the largest of three floors.

    * work: device d cannot start before the first forward reaches its first stage, then runs
      every one of its actions one after the other, and (whole backwards only) its last B
      still has to pass through every stage above its first one;
    * chain: the last micro-batch's forward on stage 0 waits for the M - 1 before it, then
      crosses every stage down and back up;
    * memory (when capped): a stage-micro-batch on stage s is held at least from its forward's
      start to the end of its own weight gradient, a round trip through stages s..S-1. A device
      holding at most ``cap`` at once, from its start to the end of the step, covers at most
      cap x (time it is busy holding), which must reach M x the sum of its stages' round trips.
    """
    split = p.split
    i_min = min(p.I, p.B) if split else p.B  # the fastest input gradient a stage can pass upstream
    own = min(p.I + p.W, p.B) if split else p.B  # the fastest full backward of one stage
    place, S, M = p.placement, p.S, p.M
    best = (M - 1) * p.F + S * p.F + (S - 1) * i_min + own
    for d in range(p.K):
        stages = [s for s in range(S) if place[s] == d]
        start = min(stages) * p.F
        tail = 0 if split else min(stages) * p.B  # a device's last B still has to travel up to stage 0
        best = max(best, start + len(stages) * M * (p.F + own) + tail)
        if p.cap is not None:
            trips = sum((S - s) * p.F + (S - s - 1) * i_min + own for s in stages)
            best = max(best, start + -(-M * trips // p.cap))
    return best


def points() -> list[int]:
    """Each rung's points, easiest first (the notebook's test cells carry the same)."""
    return [r.points for r in RUNGS]

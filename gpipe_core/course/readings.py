"""What a timing on a shared machine can say, and a learner's prediction set beside the measurement and the formula.

Notebook experiments run on laptops, Colab and graded machines that other
programs share. One timed step proves little there: issue 25 saw identical
layers profiled at 0.54 and 16.9 ms and a pipeline "slower" than one device
at every M. So an experiment here times its candidates in turns
(:func:`gpipe_core.course.experiments.interleaved_times`, the round-robin timer
``gpipe train`` uses), reports each one's median and spread, and says when the
runs cannot tell the candidates apart or the machine was loaded while timing
(the same load-average rule as ``gpipe train``'s report). A sentence about
which is faster is printed only when every run agrees.

:func:`reveal` is the other half of predict-then-reveal: the learner writes a
number before the experiment runs; afterwards it is printed beside the
measurement and the formula, with the reason the two may differ.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from .experiments import interleaved_times


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed run of one candidate."""

    name: str
    runs: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def spread(self) -> float:
        """Slowest run minus fastest run."""
        return max(self.runs) - min(self.runs)

    def __str__(self) -> str:
        return f"{self.name}: median {self.median * 1e3:,.1f} ms, spread {self.spread * 1e3:,.1f} ms " \
               f"over {len(self.runs)} runs"


def time_in_turns(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, Timing]:
    """Each candidate timed ``repeats`` times, in turns (a b, b a, ...), after ``warmup`` calls each."""
    runs = interleaved_times(fns, repeats, warmup)
    return {name: Timing(name, tuple(times)) for name, times in runs.items()}


def load_note(cores: int | None = None, load: float | None = None) -> str:
    """A warning when the machine's 1-minute load average exceeded its cores while timing (else "")."""
    cores = cores or os.cpu_count() or 1
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load <= cores:
        return ""
    return (f"note: the load average was {load:.1f} on {cores} cores while timing: other programs held the cores, "
            "so these times read high and their differences may be noise; rerun on a quiet machine.")


def verdict(fast: Timing, slow: Timing, claim: str, note: str | None = None) -> str:
    """Whether the runs say ``claim`` ("fast" is quicker than "slow"), in words, with the load warning if any.

    Readable only when every run of ``fast`` beat every run of ``slow``; against it only when every run
    lost; otherwise the runs overlap and the experiment cannot say.
    """
    note = load_note() if note is None else note
    if max(fast.runs) < min(slow.runs):
        said = f"readable: every run of {fast.name} beat every run of {slow.name}, so {claim}"
    elif min(fast.runs) > max(slow.runs):
        said = (f"against the claim: every run of {fast.name} was slower than every run of {slow.name}; {claim} "
                "does not hold on this machine now")
    else:
        said = (f"unreadable: the runs of {fast.name} ({fast.median * 1e3:,.1f} ms, spread "
                f"{fast.spread * 1e3:,.1f}) and {slow.name} ({slow.median * 1e3:,.1f} ms, spread "
                f"{slow.spread * 1e3:,.1f}) overlap, so this run cannot say whether {claim}")
    return f"{said}. {note[0].upper()}{note[1:]}" if note else f"{said}."


def reveal(what: str, predicted: float | None, measured: float, formula: float | None, why: str) -> str:
    """Your prediction beside the measurement and the formula, and why the measurement and the formula differ."""
    lines = [f"{what}:"]
    if predicted is None:
        lines.append("  you made no prediction: set it in the prediction cell before running the experiment")
    else:
        lines.append(f"  you predicted {predicted:.3g}")
    lines.append(f"  measured       {measured:.3g}")
    if formula is not None:
        lines.append(f"  formula        {formula:.3g}")
    if predicted is not None:
        closer = "the formula" if formula is not None and abs(predicted - formula) < abs(predicted - measured) \
            else "the measurement"
        lines.append(f"  your prediction was closer to {closer}")
    lines.append(f"  why they differ: {why}")
    return "\n".join(lines)

"""The paper's formulas, in one place, so the engine, the book and the grader agree.

GPipe (Huang et al. 2019, section 2.3) states two laws that the whole course
checks against measurements:

* the bubble: with K stages and M micro-batches each stage idles for K-1 of the
  M+K-1 forward slots, so the idle fraction is (K-1)/(M+K-1);
* activation memory with re-materialisation: a stage keeps only its boundary
  input for every micro-batch (N samples in all) plus the working set of one
  micro-batch being recomputed ((L/K) layers of N/M samples): O(N + (L/K)(N/M)).
  Without re-materialisation a stage keeps every layer's activations for the
  whole batch: O(N * L/K) per stage, O(N * L) for the pipeline.

Every function takes M before K, as the schedules do (``gpipe_schedule(M, K)``).

Memory is counted in *units*: one sample's activation at one layer boundary.
Multiply by the bytes of such an activation to get bytes.
"""

from __future__ import annotations


def _check(M: int, K: int) -> None:
    if K < 1 or M < 1:
        raise ValueError(f"K and M must be at least 1 (got K={K}, M={M})")


def bubble_fraction(M: int, K: int) -> float:
    """Idle fraction of a fill-drain pipeline: (K-1)/(M+K-1)."""
    _check(M, K)
    return (K - 1) / (M + K - 1)


def ideal_speedup(M: int, K: int) -> float:
    """Speedup of K equal stages over one device doing the same micro-batched work.

    One device needs K*M stage-slots; the pipeline needs M+K-1 slots.
    """
    _check(M, K)
    return K * M / (M + K - 1)


def schedule_ticks(M: int, K: int) -> int:
    """Clock ticks of a GPipe step with unit-time forward and backward: 2(M+K-1)."""
    _check(M, K)
    return 2 * (M + K - 1)


def memory_units_rematerialized(N: int, L: int, M: int, K: int) -> float:
    """Activation units one stage holds with re-materialisation: N + (L/K)(N/M)."""
    _check(M, K)
    return N + (L / K) * (N / M)


def memory_units_stored(N: int, L: int, K: int) -> float:
    """Activation units one stage holds without re-materialisation: N * L/K."""
    _check(1, K)
    return N * L / K


def memory_units_cheatsheet(N: int, L: int, M: int, K: int) -> float:
    """The often-quoted O(N*L/K + (N/M)*L): the stored cost plus a term.

    Kept only so the book can show measured bytes beside it and explain why it
    is not the re-materialised law.
    """
    _check(M, K)
    return N * L / K + (N / M) * L

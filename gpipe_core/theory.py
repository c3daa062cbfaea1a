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


# -- after GPipe: the closed forms of gpipe_core.zoo's schedules ----------------------------------
#
# Unit costs: F = I = W = 1 and B = I + W = 2 per stage (a stage being one model
# chunk, so with V chunks per device one unit is 1/V of a device's forward).
# Derivations are in gpipe_core.zoo's docstring; tests/test_zoo.py checks each
# against the simulated table.

_STEP_RANGE = {"gpipe": "M >= 1", "1f1b": "M >= 1", "zb-h1": "M >= K", "zb-h2": "M >= K",
               "interleaved": "M a multiple of K", "zbv": "M >= 2K"}


def step_units(schedule: str, M: int, K: int, V: int = 2) -> int:
    """Step time under unit costs: 3(M+K-1) for GPipe and 1F1B, 3M+K-1 for ZB-H1 and ZB-H2,
    3VM+3(K-1) for interleaved 1F1B, 6M+K-1 for ZBV (in chunk units; V = 2)."""
    _check(M, K)
    holds = {"gpipe": True, "1f1b": True, "zb-h1": M >= K, "zb-h2": M >= K, "interleaved": M % K == 0,
             "zbv": M >= 2 * K}
    if schedule not in holds:
        raise ValueError(f"no closed form for {schedule!r}: use one of {sorted(holds)}")
    if not holds[schedule]:
        raise ValueError(f"the closed form of {schedule} holds for {_STEP_RANGE[schedule]} (got M={M}, K={K}): "
                         "simulate the table (gpipe_core.simulate) for other sizes")
    return {"gpipe": 3 * (M + K - 1), "1f1b": 3 * (M + K - 1), "zb-h1": 3 * M + K - 1, "zb-h2": 3 * M + K - 1,
            "interleaved": 3 * V * M + 3 * (K - 1), "zbv": 6 * M + K - 1}[schedule]


def zb_h1_bubble(M: int, K: int) -> float:
    """Idle fraction of ZB-H1's step under unit costs: (K-1)/(3M+K-1); each device idles K-1 units,
    a third of 1F1B's 3(K-1)."""
    _check(M, K)
    return (K - 1) / (3 * M + K - 1)


def interleaved_bubble(M: int, K: int, V: int) -> float:
    """Interleaved 1F1B's bubble relative to the work (Megatron-LM's measure): (K-1)/(V*M)."""
    _check(M, K)
    return (K - 1) / (V * M)


def peak_held(schedule: str, M: int, K: int, V: int = 2) -> list[int]:
    """Peak (micro-batch, stage) activations each device holds under unit costs (chunks when V > 1).

    GPipe M; 1F1B K-d on device d; interleaved 2(K-1-d)+(V-1)K+1; ZB-H1 K (M >= K); ZB-H2 2K-1
    (M >= 2K-1); ZBV 2K (M >= 2K), i.e. K whole micro-batches.
    """
    _check(M, K)
    forms = {"gpipe": lambda d: M, "1f1b": lambda d: min(K - d, M),
             "interleaved": lambda d: min(V * M, 2 * (K - 1 - d) + (V - 1) * K + 1),
             "zb-h1": lambda d: K, "zb-h2": lambda d: 2 * K - 1, "zbv": lambda d: 2 * K}
    needs = {"zb-h1": M >= K, "zb-h2": M >= 2 * K - 1, "zbv": M >= 2 * K}
    if schedule not in forms:
        raise ValueError(f"no closed form for {schedule!r}: use one of {sorted(forms)}")
    if not needs.get(schedule, True):
        raise ValueError(f"the closed form of {schedule}'s memory needs more micro-batches (got M={M}, K={K})")
    return [forms[schedule](d) for d in range(K)]

"""Readings of timed experiments: a verdict only when every run agrees, the load said, predictions revealed.

Made-up timings only, so nothing here depends on how busy the machine is.
"""

from __future__ import annotations

from gpipe_core.course.readings import Timing, load_note, reveal, time_in_turns, verdict


def test_a_claim_is_read_only_when_every_run_agrees() -> None:
    fast, slow = Timing("optimal", (0.10, 0.11, 0.12)), Timing("by count", (0.15, 0.16, 0.30))
    assert verdict(fast, slow, "the optimal split is faster", note="").startswith("readable")
    assert verdict(slow, fast, "by count is faster", note="").startswith("against the claim")
    overlapping = Timing("by count", (0.09, 0.16, 0.30))
    said = verdict(fast, overlapping, "the optimal split is faster", note="")
    assert said.startswith("unreadable") and "110.0 ms" in said and "cannot say" in said


def test_the_load_is_said_when_it_exceeds_the_cores() -> None:
    assert load_note(cores=2, load=1.5) == ""
    assert "load average was 9.8 on 2 cores" in load_note(cores=2, load=9.8)
    assert "rerun on a quiet machine" in verdict(Timing("a", (1.0,)), Timing("b", (2.0,)), "a is faster",
                                                 note=load_note(cores=2, load=9.8))


def test_timing_in_turns_runs_every_candidate_as_often_as_asked() -> None:
    calls: list[str] = []
    got = time_in_turns({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then turns reversed each round
    assert [len(t.runs) for t in got.values()] == [4, 4] and got["a"].spread >= 0


def test_reveal_sets_the_prediction_beside_measurement_and_formula() -> None:
    text = reveal("speedup at M=32", 3.5, 1.8, 3.6, "four workers share two cores")
    assert "you predicted 3.5" in text and "measured       1.8" in text and "formula        3.6" in text
    assert "closer to the formula" in text and "four workers share two cores" in text
    assert "you made no prediction" in reveal("speedup", None, 1.8, 3.6, "load")


def test_a_sweep_row_is_readable_only_when_its_runs_agree_on_a_side() -> None:
    from gpipe_core.course.experiments import SweepRow

    row = SweepRow(8, 0.1, 0.18, 1.8, 1.78, 0.1, 0.11, pipeline_runs=(0.09, 0.1, 0.12), sequential_runs=(0.17, 0.2))
    assert row.readable
    assert not SweepRow(8, 0.1, 0.11, 1.1, 1.78, 0.1, 0.11, (0.09, 0.15), (0.11, 0.2)).readable
    assert not SweepRow(8, 0.1, 0.11, 1.1, 1.78, 0.1, 0.11).readable  # no runs kept: nothing to read

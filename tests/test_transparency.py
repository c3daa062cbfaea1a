"""The transparency experiment the book plots, on a few steps: the numbers it reports mean what they say."""

from __future__ import annotations

from gpipe_core.course.experiments import transparency


def test_language_model_curves_coincide_over_k_and_m() -> None:
    r = transparency("gpt", Ks=(1, 2), Ms=(1, 3), seeds=(0,), steps=3)
    assert set(r.curves) == {(1, 1, 0), (1, 3, 0), (2, 1, 0), (2, 3, 0)}
    assert r.curves[(2, 3, 0)][-1] < r.curves[(2, 3, 0)][0]  # it trains
    assert r.gap_over_k() < 1e-5 and r.gap_over_m() < 1e-5
    assert not r.norm_gap


def test_batch_norm_curves_coincide_over_k_not_over_m_and_deferred_stats_match() -> None:
    r = transparency("bn", Ks=(1, 2), Ms=(1, 4), seeds=(0,), steps=3)
    assert r.gap_over_k() < 1e-5
    assert r.gap_over_m() > 1e-3  # per-micro-batch normalisation is another model
    assert max(r.norm_gap.values()) < 1e-5
    assert r.plain_norm_gap[1] < 1e-5 and r.plain_norm_gap[4] > 1e-2  # the pitfall deferral removes

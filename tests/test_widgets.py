"""The notebook explorer's numbers and chart: a table drawn on its own clock, timed at unit costs, and compared with
its own schedule's laws (issue 25: never GPipe's formula beside another schedule, never ticks read as time)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from gpipe_core.course.widgets import draw_schedule, summary, why_not_built  # noqa: E402
from gpipe_core.schedules.schedule import flatten, gpipe_schedule, one_f_one_b_schedule  # noqa: E402
from gpipe_core.schedules.zoo import BUILTINS  # noqa: E402
from gpipe_core.sim.theory import bubble_fraction  # noqa: E402


@pytest.mark.parametrize(("K", "M"), [(1, 1), (2, 3), (4, 8), (8, 32)])
def test_summary_reads_gpipes_table(K: int, M: int) -> None:
    s = summary(gpipe_schedule, K, M)
    assert s["ticks"] == 2 * (M + K - 1) and s["step_units"] == 3 * (M + K - 1)
    assert s["bubble_ticks"] == pytest.approx(bubble_fraction(M, K)) == pytest.approx(s["bubble_units"])
    assert s["bubble_law"] == pytest.approx(bubble_fraction(M, K)) and s["law"] == "gpipe"
    assert s["peak_memory"] == [M] * K == s["peak_law"]


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_is_compared_with_its_own_laws(name: str) -> None:
    s = summary(name, 4, 8)  # sizes where every closed form holds
    assert s["law"] == name
    assert (s["step_law"], s["peak_law"]) == (s["step_units"], s["peak_memory"])
    assert s["bubble_law"] == pytest.approx(s["bubble_units"])
    assert ("memory_remat" in s) == (name == "gpipe"), "GPipe's activation law belongs to GPipe only"


def test_ticks_are_not_time_zb_h1_is_longer_in_ticks_and_faster_in_units() -> None:
    zb, one = summary("zb-h1", 4, 8), summary("1f1b", 4, 8)
    assert zb["ticks"] > one["ticks"] and zb["step_units"] < one["step_units"]
    fig, ax = plt.subplots()
    draw_schedule("zb-h1", 4, 8, ax=ax)
    assert "every action one tick" in ax.get_title() and "unit costs (F = I = W = 1, B = 2)" in ax.get_title()
    plt.close(fig)


def test_a_learners_function_has_no_law_unless_named() -> None:
    def mine(M: int, K: int) -> list:
        return one_f_one_b_schedule(M, K)

    assert summary(mine, 4, 8)["law"] is None and "no schedule named" in summary(mine, 4, 8)["why_no_law"]
    assert summary(mine, 4, 8, law="1f1b")["peak_law"] == [4, 3, 2, 1]


def test_interleaved_m_not_a_multiple_of_k_is_explained_in_words() -> None:
    with pytest.raises(ValueError) as caught:
        summary("interleaved", 5, 7)
    said = why_not_built(caught.value, 5, 7, virtual=True)
    assert "groups of K=5" in said and "deadlock" in said and "M=5 or M=10" in said
    assert "multiple of K" in summary("interleaved", 4, 6)["why_no_law"]  # built, but no closed form: said why


def test_memory_differs_by_schedule() -> None:
    K, M = 4, 8
    assert summary(one_f_one_b_schedule, K, M)["peak_memory"] == [4, 3, 2, 1]
    assert summary("zb-h1", K, M)["peak_memory"] == [K] * K
    zbv = summary("zbv", K, M)  # two stages per device, placed by the built-in's V-shape
    assert zbv["peak_memory"] == [2 * K] * K and zbv["bubble_units"] < summary("1f1b", K, M)["bubble_units"]


def test_every_builtin_draws_one_box_per_action() -> None:
    for name, builtin in BUILTINS.items():
        fig, ax = plt.subplots()
        draw_schedule(name, 4, 8, ax=ax)
        actions = len(list(flatten(builtin.build(8, 4))))  # an overlapped F&B cell draws its two actions
        assert len(ax.collections) == actions, name
        assert "peak micro-batches held per device" in ax.get_title()
        plt.close(fig)


def test_a_wrong_table_is_named_and_an_unknown_name_refused() -> None:
    def backwards_first(M: int, K: int) -> list:
        return list(reversed(gpipe_schedule(M, K)))

    with pytest.raises(ValueError, match="B"):
        summary(backwards_first, 2, 2)
    with pytest.raises(ValueError, match="unknown schedule 'zb-h9'"):
        summary("zb-h9", 2, 2)

"""The notebook explorer's numbers and chart: a table drawn on its own clock, with the simulator's memory."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from gpipe_core.schedule import flatten, gpipe_schedule, one_f_one_b_schedule  # noqa: E402
from gpipe_core.theory import bubble_fraction  # noqa: E402
from gpipe_core.widgets import draw_schedule, summary  # noqa: E402
from gpipe_core.zoo import BUILTINS  # noqa: E402


@pytest.mark.parametrize(("K", "M"), [(1, 1), (2, 3), (4, 8), (8, 32)])
def test_summary_reads_gpipes_table(K: int, M: int) -> None:
    s = summary(gpipe_schedule, K, M)
    assert s["ticks"] == 2 * (M + K - 1)
    assert s["bubble_table"] == pytest.approx(bubble_fraction(M, K)) == pytest.approx(s["bubble_formula"])
    assert s["peak_memory"] == [M] * K


def test_memory_differs_by_schedule() -> None:
    K, M = 4, 8
    assert summary(one_f_one_b_schedule, K, M)["peak_memory"] == [4, 3, 2, 1]
    assert summary("zb-h1", K, M)["peak_memory"] == [K] * K
    zbv = summary("zbv", K, M)  # two stages per device, placed by the built-in's V-shape
    assert zbv["peak_memory"] == [2 * K] * K and zbv["bubble_table"] < summary("1f1b", K, M)["bubble_table"]


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

"""The breakdown benchmark's instrument: nested parts each get their own time, on a clock the test drives."""

from __future__ import annotations

from collections import Counter

import pytest

from benchmarks import breakdown


class Ticks:
    """A CPU clock that advances only when the test says so."""

    def __init__(self) -> None:
        self.now = 0

    def thread_time_ns(self) -> int:
        return self.now


def test_nested_parts_count_their_own_time_and_pass_it_up(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = Ticks()
    monkeypatch.setattr(breakdown, "time", ticks)
    parts = breakdown.Parts()

    def inner() -> None:
        ticks.now += 30

    wrapped_inner = parts.wrap("inner", inner)

    def outer() -> str:
        ticks.now += 5
        wrapped_inner()
        ticks.now += 7
        wrapped_inner()
        return "done"

    assert parts.wrap("outer", outer)() == "done"
    assert parts.spent == Counter({"inner": 60, "outer": 12})

    def fails() -> None:
        ticks.now += 4
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        parts.wrap("outer", lambda: (wrapped_inner(), parts.wrap("failing", fails)()))()
    assert parts.spent == Counter({"inner": 90, "outer": 12, "failing": 4})  # a raising part still counts


def test_rows_take_the_quiet_quarter_and_give_shares_of_each_candidate() -> None:
    steps = {"ours": [(100, Counter(a=60, b=40)), (1000, Counter(a=900, b=100))] * 2,
             "plain": [(80, Counter(a=80)), (800, Counter(a=800))] * 2}
    rows = breakdown._rows(steps, "shape")  # noqa: SLF001 - the arithmetic behind the rows
    assert rows[0].value == pytest.approx(100 / 80)
    shares = {r.metric.split(" in ")[-1]: r.value for r in rows[1:] if "ours" in r.metric}
    assert shares == {"a": pytest.approx(60.0), "b": pytest.approx(40.0)}

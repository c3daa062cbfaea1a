"""The benchmark harness's own logic: statistics, the stage-call clock, the GPU notebook report.

No timing is asserted here (timings belong in ``make bench``); these tests
check what the numbers are built from: the confidence interval's order
statistics, that every stage call is counted (I and W included), that the
before-and-after switch of the mailbox holds only inside its block, and that a
notebook's graded cells are reported pass / fail / not run correctly.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn

from benchmarks import gpu_notebooks
from benchmarks.common import Row, attainable_speedup, interleaved, median_ci, paired
from benchmarks.runtime_overhead import (
    Scale,
    _plain_loop,
    _two_thread_loop,
    every_wake_at_once,
    every_wake_held,
    measure,
)
from benchmarks.stage_clock import StageClock, stages_of
from gpipe_core import GPipe
from gpipe_core.engine import mailbox


def _binomial_below(n: int, k: int) -> float:
    return sum(math.comb(n, j) for j in range(k)) / 2**n


@pytest.mark.parametrize("n", [6, 9, 15, 31])
def test_median_interval_is_the_binomial_order_statistics(n: int) -> None:
    values = [float(v) for v in range(n, 0, -1)]  # unsorted on purpose
    median, low, high = median_ci(values)
    assert median == (n + 1) / 2
    k = int(low)  # values are 1..n, so the value is its rank
    assert high == n + 1 - k  # symmetric around the median
    assert _binomial_below(n, k) <= 0.025 < _binomial_below(n, k + 1)  # widest k that keeps 95%


def test_median_interval_falls_back_to_the_range_for_few_values() -> None:
    assert median_ci([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)
    with pytest.raises(ValueError):
        median_ci([])


def test_estimate_row_spread_covers_its_interval() -> None:
    row = Row.estimate("s", "m", [1.0, 2.0, 3.0, 4.0, 10.0, 5.0, 6.0], target="<= 4.5")
    assert row.value == 4.0 and (row.low, row.high) == (1.0, 10.0)
    assert row.spread == 6.0 and row.met is True
    assert row.as_json()["low"] == 1.0


def test_interleaved_reverses_the_order_every_other_round_and_pairs_by_round() -> None:
    """No candidate always runs first (what one leaves behind favours each side equally often)."""
    calls: list[str] = []
    ticks = iter(range(1000))
    t = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4, warmup=1,
                    clock=lambda: float(next(ticks)))
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]  # warm-ups, then a b / b a rounds
    assert len(t["a"].runs) == len(t["b"].runs) == 4 and all(v == 1.0 for v in t["a"].runs)
    slow = type(t["a"])(0.0, 0.0, [2.0, 4.0, 6.0])
    fast = type(t["a"])(0.0, 0.0, [1.0, 2.0, 2.0])
    assert paired(slow, fast) == [2.0, 2.0, 3.0]


def test_attainable_speedup_scales_the_ideal_by_the_machine_and_never_drops_below_serial() -> None:
    assert attainable_speedup(1.78, 2.0) == pytest.approx(1.78)  # perfect hardware: the ideal itself
    assert attainable_speedup(1.78, 1.8) == pytest.approx(1.602)
    assert attainable_speedup(1.94, 0.9) == 1.0  # two threads slower than one: run the stages in turn


def test_hand_written_two_thread_loop_makes_the_plain_loops_calls() -> None:
    """The threads row's reference does the same work as the plain loop: the same gradients.

    Its backwards run in reverse micro-batch order, so the sums are added in
    another order: equal up to float rounding, not to the bit.
    """
    M = 8
    model = nn.Sequential(Scale(), Scale())
    with torch.no_grad():
        model[0].w.fill_(0.5), model[1].w.fill_(-2.0)
    x, y = torch.randn(M, 1), torch.randn(M, 1)
    grads = []
    for loop in (_plain_loop, _two_thread_loop):
        model.zero_grad(set_to_none=True)
        loop(model, x, y, M)
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(g is not None and g.abs().sum() > 0 for g in grads[0])
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=0)


def test_every_wake_at_once_turns_holding_off_for_pipes_stepped_inside_only() -> None:
    """The benchmark's before-and-after row: inside the block no action counts as short; after it, as before."""
    before = mailbox.SHORT_ACTION
    with every_wake_at_once():
        assert mailbox.Outbox([]).short == 0.0
    assert mailbox.SHORT_ACTION == before > 0 and mailbox.Outbox([]).short == before


def test_every_wake_held_holds_without_limit_inside_and_restores_the_shipped_settings() -> None:
    """The floor row: every action short, no budget; afterwards the shipped settings, even after an error."""
    shipped = mailbox.SHORT_ACTION, mailbox.HOLD_BUDGET
    with pytest.raises(RuntimeError, match="inside"), every_wake_held():
        box = mailbox.Outbox([])
        assert (box.short, box.budget) == (float("inf"), float("inf"))
        raise RuntimeError("inside")
    assert (mailbox.SHORT_ACTION, mailbox.HOLD_BUDGET) == shipped
    assert (mailbox.Outbox([]).short, mailbox.Outbox([]).budget) == shipped and shipped[1] < float("inf")


def test_stage_clock_counts_every_call_and_comes_off_cleanly() -> None:
    class Fake:
        def forward(self, i: int) -> int:
            return i + 1

    fake = Fake()
    clock = StageClock([fake]).install()
    assert fake.forward(1) == 2 and fake.forward(2) == 3
    seconds, calls = clock.take()
    assert calls == 2 and seconds >= 0
    assert clock.take() == (0, 0)
    clock.remove()
    assert "forward" not in vars(fake)
    fake.forward(3)
    assert clock.take() == (0, 0)


@pytest.mark.parametrize("schedule, per_microbatch_stage", [("gpipe", 2), ("zb-h1", 3)])
def test_measure_times_every_action_of_the_table(schedule: str, per_microbatch_stage: int) -> None:
    """The runtime-overhead benchmark sees every stage call (F, B, I, W) and its own work is never negative."""
    K, M = 2, 4
    model = nn.Sequential(*[Scale() for _ in range(K)])
    x, y = torch.randn(M, 1), torch.randn(M, 1)
    pipe = GPipe(model, partitions=K, chunks=M, checkpoint="never", schedule=schedule, threads_per_stage=1)
    actions = sum(len(tick) for tick in pipe.table)
    assert actions == per_microbatch_stage * M * K
    out = measure(pipe, lambda: _plain_loop(model, x, y, M), lambda: pipe.step(x, y, nn.functional.mse_loss, seed=0),
                  repeats=2, actions=actions)
    assert len(out["own"]) == len(out["engine"]) == len(out["plain"]) == 2
    assert all(v >= 0 for v in out["own"])
    assert all("forward" not in vars(s) for s in stages_of(pipe))  # the wrappers came off
    with pytest.raises(RuntimeError, match="STAGE_CALLS"):
        measure(pipe, lambda: None, lambda: pipe.step(x, y, nn.functional.mse_loss, seed=0),
                repeats=1, actions=actions + 1)


# ---- the GPU notebook runner, on CPU ---------------------------------------------------------------------


def _graded(source: str, grade_id: str, points: float = 1) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": grade_id, "points": points}
    return cell


def test_report_sorts_graded_cells_into_pass_fail_and_not_run() -> None:
    nb = nbformat.v4.new_notebook()
    passed, failed, unrun = _graded("1", "t_pass", 2), _graded("x", "t_fail"), _graded("2", "t_unrun")
    helper, quiet = nbformat.v4.new_code_cell("import nope"), nbformat.v4.new_code_cell("y = 1")
    passed.execution_count = failed.execution_count = helper.execution_count = quiet.execution_count = 1
    failed.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="wrong device", traceback=[])]
    helper.outputs = [nbformat.v4.new_output("error", ename="ModuleNotFoundError", evalue="nope", traceback=[])]
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), quiet, passed, failed, helper, unrun]
    results = {r.name: r for r in gpu_notebooks.report(nb, "01/x.ipynb")}
    assert set(results) == {"t_pass", "t_fail", "cell 4", "t_unrun"}  # the quiet ungraded cell is left out
    assert (results["t_pass"].status, results["t_pass"].points) == ("pass", 2.0)
    assert results["t_fail"].status == "fail" and results["t_fail"].error == "AssertionError: wrong device"
    assert results["t_unrun"].status == "not run"
    assert not results["cell 4"].graded and results["cell 4"].error.startswith("ModuleNotFoundError")


def test_arguments_and_notebook_selection(tmp_path: Path) -> None:
    args = gpu_notebooks.parse_args(["04", "05", "--budget", "100"])
    assert args.only == ["04", "05"] and args.budget == 100 and not args.allow_cpu
    with pytest.raises(SystemExit):
        gpu_notebooks.parse_args(["--cell-timeout", "0"])
    for name in ("01_a", "02_b"):
        (tmp_path / "solutions" / name).mkdir(parents=True)
        nbformat.write(nbformat.v4.new_notebook(), tmp_path / "solutions" / name / "n.ipynb")
    assert [p.parent.name for p in gpu_notebooks.notebooks([], tmp_path)] == ["01_a", "02_b"]
    assert [p.parent.name for p in gpu_notebooks.notebooks(["02"], tmp_path)] == ["02_b"]
    with pytest.raises(SystemExit, match="01_a, 02_b"):
        gpu_notebooks.notebooks(["09"], tmp_path)


def test_execute_runs_on_after_errors_and_interrupts_a_stuck_cell(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [_graded("assert 1 + 1 == 2", "t_ok"), _graded("assert False, 'planted'", "t_bad"),
                _graded("import time\ntime.sleep(60)", "t_stuck"), _graded("x = 3", "t_after")]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    ran, note = gpu_notebooks.execute(path, cell_timeout=3, deadline=time.monotonic() + 120)
    results = {r.name: r for r in gpu_notebooks.report(ran, "n")}
    assert note == ""
    assert results["t_ok"].status == "pass" and results["t_after"].status == "pass"
    assert results["t_bad"].status == "fail" and "planted" in results["t_bad"].error
    assert results["t_stuck"].status == "fail" and results["t_stuck"].error.startswith("CellTimeoutError")


def _results(sections: dict[str, float], quick: bool = False, curve: list | None = None) -> dict:
    meta = {"torch": "x", "cpus": 2, "quick": quick, "seconds": 9.0, "load_before": 0.1, "load_after": 0.2}
    rows = [{"section": s, "metric": f"m{s}", "value": v} for s, v in sections.items()]
    return {"meta": meta, "rows": rows, "curve": curve or []}


def test_update_replaces_only_the_sections_it_ran(tmp_path: Path) -> None:
    import json

    from benchmarks.run import merged

    path = tmp_path / "bench.json"
    path.write_text(json.dumps(_results({"1 overhead": 1.0, "3 peer": 3.0, "grading": 8.0}, curve=[{"M": 1}])))
    out = merged(path, _results({"grading": 80.0, "3 peer": 30.0}), {3, 8})
    assert [(r["section"], r["value"]) for r in out["rows"]] == [("1 overhead", 1.0), ("grading", 80.0),
                                                                 ("3 peer", 30.0)]
    assert out["curve"] == [{"M": 1}], "a section that was not run keeps its curve"
    assert set(out["meta"]["sections"]) == {"3", "8"} and out["meta"]["sections"]["3"]["load_before"] == 0.1
    with pytest.raises(SystemExit, match="cannot mix --quick"):
        merged(path, _results({"3 peer": 3.0}, quick=True), {3})
    with pytest.raises(SystemExit, match="needs earlier results"):
        merged(tmp_path / "none.json", _results({}), {3})

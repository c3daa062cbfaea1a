"""torch.distributed.pipelining's schedules through our validator and simulator, and our tables into torch's IR.

Pinned for the installed torch (2.13): which of its seven schedule classes
validate, and what they cost under unit costs (F = I = W = 1, B = 2).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from gpipe_core.distributed import torch_ir
from gpipe_core.schedules.schedule import (
    Action,
    Overlap,
    ScheduleError,
    device_orders,
    flatten,
    loop_placement,
    v_placement,
)
from gpipe_core.schedules.zoo import BUILTINS, interleaved_schedule, zbv_schedule
from gpipe_core.sim.theory import step_units

TORCH = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
pinned = pytest.mark.skipif(TORCH != (2, 13), reason="the survey is pinned for torch 2.13")


def test_every_class_is_found() -> None:
    names = set(torch_ir.torch_schedule_classes())
    assert {"ScheduleGPipe", "Schedule1F1B", "ScheduleInterleaved1F1B", "ScheduleLoopedBFS",
            "ScheduleInterleavedZeroBubble", "ScheduleZBVZeroBubble"} <= names
    if TORCH == (2, 13):
        assert names == {"ScheduleGPipe", "Schedule1F1B", "ScheduleInterleaved1F1B", "ScheduleLoopedBFS",
                         "ScheduleInterleavedZeroBubble", "ScheduleZBVZeroBubble", "ScheduleDualPipeV"}


@pinned
@pytest.mark.parametrize(("K", "M"), [(2, 4), (4, 8)])
def test_survey_pinned_for_torch_2_13(K: int, M: int) -> None:
    rows = {r["name"]: r for r in torch_ir.survey(K, M)}
    # Schedule1F1B's IR (what torch draws, not what its runtime runs) starts the last rank at F1 and ends at F{M}
    assert not rows["Schedule1F1B"]["valid"]
    assert rows["Schedule1F1B"]["error"] == f"F{M}@stage{K - 1} on rank {K - 1} is out of range: " \
                                             f"micro-batches are 0..{M - 1}"
    expected = {  # name: (V, unit step, peak held per device)
        "ScheduleGPipe": (1, 3 * (M + K - 1), [M] * K),
        "ScheduleInterleaved1F1B": (2, step_units("interleaved", M, K), [2 * (K - 1 - d) + K + 1 for d in range(K)]),
        "ScheduleLoopedBFS": (2, 6 * M + 3 * (K - 1), [2 * M] * K),
        "ScheduleInterleavedZeroBubble": (2, 6 * M + K - 1, [2 * K] * K),
        "ScheduleZBVZeroBubble": (2, step_units("zbv", M, K), [2 * K] * K),
        "ScheduleDualPipeV": (2, step_units("dualpipev", M, K), [2 * K + 1] * K),  # its F&B cells cost F + B
    }
    for name, (V, step, held) in expected.items():
        r = rows[name]
        assert r["valid"], (name, r["error"])
        assert (r["V"], r["step"], r["held"]) == (V, step, held), name


def test_our_interleaved_is_torchs_and_our_zbv_matches_its_step() -> None:
    for K, M in [(2, 4), (3, 6), (4, 8)]:
        theirs = torch_ir.import_torch("ScheduleInterleaved1F1B", K, M)
        assert theirs.valid and theirs.placement == loop_placement(K, 2)
        assert device_orders(interleaved_schedule(M, K), loop_placement(K, 2)) == theirs.orders
        zbv = torch_ir.import_torch("ScheduleZBVZeroBubble", K, M)
        assert zbv.valid and zbv.placement == v_placement(K)
        assert len(zbv.table) == len(zbv_schedule(M, K)) == step_units("zbv", M, K)


def test_dualpipev_overlap_becomes_an_overlap_cell() -> None:
    imported = torch_ir.import_torch("ScheduleDualPipeV", 2, 4)
    assert imported.valid
    assert {a.kind for a in flatten(imported.orders)} == {"F", "B", "I", "W"}  # whole B for some, I and W for others
    overlaps = [c for order in imported.orders for c in order if isinstance(c, Overlap)]
    assert overlaps and all(c.forward.kind == "F" and c.backward.kind == "B" for c in overlaps)
    assert str(torch_ir.to_torch(imported.table, imported.placement)[0][7]) == "(0F3;3B1)OVERLAP_F_B"


def test_bad_orders_name_the_offending_action() -> None:
    orders = [[Action("F", 0, 0), Action("B", 0, 0)], [Action("B", 0, 1), Action("F", 0, 1)]]
    imported = torch_ir.from_orders("backwards first", orders, 1, 1)
    assert not imported.valid and "B0@stage1 waits for F0@stage1" in imported.error
    split = [[Action("F", 0, 0)], [Action("F", 0, 0)]]
    with pytest.raises(ScheduleError, match="appears on ranks 0 and 1"):
        torch_ir.placement_of(split)
    refused = torch_ir.import_torch("ScheduleInterleaved1F1B", 2, 5)
    assert not refused.valid and refused.error.startswith("torch refuses K=2, M=5, V=2")
    with pytest.raises(ValueError, match="unknown torch schedule"):
        torch_ir.import_torch("ScheduleNope", 2, 4)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_our_tables_round_trip_through_torchs_ir(name: str, tmp_path: Path) -> None:
    b, K, M = BUILTINS[name], 2, 4
    table, placement = b.build(M, K), b.placement(K)
    ir = torch_ir.to_torch(table, placement)
    back = torch_ir.from_orders(name, torch_ir.actions_from_torch([ir[d] for d in range(K)]), M, b.virtual)
    assert back.valid and back.placement == placement
    assert back.orders == device_orders(table, placement)
    path = tmp_path / "table.csv"
    torch_ir.write_csv(table, placement, str(path))
    rows = list(csv.reader(path.open()))
    assert len(rows) == K and rows[0][0] == "0F0"
    from torch.distributed.pipelining.schedules import _Action

    parsed = [[_Action.from_str(cell) for cell in row] for row in rows]
    assert torch_ir.actions_from_torch(parsed) == back.orders


@pinned
def test_three_stages_per_rank() -> None:
    rows = {r["name"]: r for r in torch_ir.survey(2, 4, V=3)}
    assert rows["ScheduleInterleaved1F1B"]["valid"] and rows["ScheduleInterleaved1F1B"]["step"] == 3 * 3 * 4 + 3
    assert rows["ScheduleInterleavedZeroBubble"]["valid"] and rows["ScheduleInterleavedZeroBubble"]["step"] == 37
    for name in ("ScheduleZBVZeroBubble", "ScheduleDualPipeV"):  # V-shapes take exactly two stages per rank
        assert not rows[name]["valid"] and "exactly 2 stages per rank" in rows[name]["error"]
    assert "| ScheduleLoopedBFS | 2 | 4 | 3 | yes | 26 | 39 |" in torch_ir.markdown(rows.values())


def test_missing_internals_say_which_torch_has_them(monkeypatch) -> None:  # noqa: ANN001
    import sys

    monkeypatch.setitem(sys.modules, "torch.distributed.pipelining._schedule_visualizer", None)
    with pytest.raises(RuntimeError, match="torch 2.8 or newer.*gpipe_core.schedules.zoo"):
        torch_ir.import_torch("ScheduleGPipe", 2, 4)


def test_an_overlap_needs_a_torch_with_overlap_f_b(monkeypatch) -> None:  # noqa: ANN001
    from torch.distributed.pipelining import schedules

    table = BUILTINS["dualpipev"].build(4, 2)
    assert schedules.OVERLAP_F_B in {c.computation_type for c in torch_ir.to_torch(table, v_placement(2))[0]}
    monkeypatch.delattr(schedules, "OVERLAP_F_B")
    with pytest.raises(RuntimeError, match=r"no OVERLAP_F_B action .*run the table on gpipe_core.GPipe"):
        torch_ir.to_torch(table, v_placement(2))
    assert torch_ir.to_torch(BUILTINS["zbv"].build(4, 2), v_placement(2))  # tables without overlaps still go


def test_the_survey_command(capsys) -> None:  # noqa: ANN001
    assert torch_ir.main(["-K", "2", "-M", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n| Schedule") == len(torch_ir.torch_schedule_classes())
    assert "| ScheduleGPipe | 2 | 4 | 1 | yes | 10 | 15 | 0.200 | [4, 4] |" in out

"""Chrome/Perfetto traces of real runs and of simulated tables, checked by loading the JSON back.

One track (thread) per device, one complete ("X") slice per action, the
micro-batch, kind and stage in each slice's arguments; simulated tables under
unit costs (F = I = W = 1, B = 2, F&B = 3) are written at 1 ms per unit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.engine import batch, small_model
from torch import nn

from gpipe_core import GPipe, Trace, theory
from gpipe_core.perfetto import chrome_trace, table_trace, write
from gpipe_core.schedule import flatten
from gpipe_core.zoo import BUILTINS

CE = nn.functional.cross_entropy


def load(path: Path) -> tuple[dict[int, str], list[dict]]:
    """(track id -> track name, complete slices) of a trace file, read back as plain JSON."""
    doc = json.loads(path.read_text())
    names = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"] if e.get("name") == "thread_name"}
    return names, [e for e in doc["traceEvents"] if e["ph"] == "X"]


def check_tracks(names: dict[int, str], slices: list[dict], K: int) -> None:
    """One track per device, named and used by its own slices only, which never overlap on it."""
    assert names == {d: f"device {d}" for d in range(K)}
    for d in range(K):
        spans = sorted((s["ts"], s["ts"] + s["dur"]) for s in slices if s["tid"] == d)
        assert spans and all(a[1] <= b[0] + 1e-6 for a, b in zip(spans, spans[1:]))
    assert all(s["tid"] == s["args"]["device"] and s["pid"] == 0 and s["ts"] >= 0 for s in slices)


@pytest.mark.parametrize(("name", "K", "M", "checkpoint"), [("1f1b", 2, 3, "never"), ("dualpipev", 2, 4, "always"),
                                                            ("zbv", 3, 6, "except_last")])
def test_a_real_run_exports_one_track_per_device_and_one_slice_per_action(name: str, K: int, M: int, checkpoint: str,
                                                                         tmp_path: Path) -> None:
    x, y = batch(n=12)
    with GPipe(small_model(layers=12), partitions=K, chunks=M, schedule=name, checkpoint=checkpoint) as pipe:
        pipe.step(x, y, CE, seed=0)
    names, slices = load(write(chrome_trace(pipe.trace), tmp_path / "step.json"))
    check_tracks(names, slices, K)
    actions = list(flatten(pipe.table))
    ran = sorted((s["args"]["kind"], s["args"]["microbatch"], s["args"]["stage"]) for s in slices
                 if s["args"]["kind"] != "R")  # R: a recomputation inside a backward, its own slice
    assert ran == sorted((a.kind, a.microbatch, a.stage) for a in actions)
    recomputed = sum(s["args"]["kind"] == "R" for s in slices)
    assert recomputed == {"never": 0, "always": M, "except_last": M - 1}[checkpoint] * pipe.S
    for s in slices:
        assert s["name"] == f"{s['args']['kind']}{s['args']['microbatch']}" + \
            (f":{s['args']['stage']}" if pipe.S > K else "") and s["cat"] == s["args"]["kind"]
        assert s["tid"] == pipe.placement[s["args"]["stage"]]


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_a_simulated_table_exports_the_same(name: str, tmp_path: Path) -> None:
    b, K, M = BUILTINS[name], 4, 8
    table, placement = b.build(M, K), b.placement(K)
    names, slices = load(write(table_trace(table, K, placement=placement), tmp_path / f"{name}.json"))
    check_tracks(names, slices, K)
    assert len(slices) == len(list(flatten(table)))
    units = max(s["ts"] + s["dur"] for s in slices) / 1000  # 1 ms per unit
    assert units == pytest.approx(theory.step_units(name, M, K, b.virtual))


def test_overlapping_slices_get_a_second_track() -> None:
    trace = Trace(1)
    trace.add(0, 0, "F", 0.0, 2.0)
    trace.add(0, 1, "B", 1.0, 3.0)  # overlaps the forward: another stream of the same GPU
    trace.add(0, 2, "F", 3.0, 4.0)
    doc = chrome_trace(trace)
    names = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"] if e.get("name") == "thread_name"}
    assert names == {0: "device 0", 100: "device 0 (overlapped)"}
    tracks = {e["args"]["microbatch"]: e["tid"] for e in doc["traceEvents"] if e["ph"] == "X"}
    assert tracks == {0: 0, 1: 100, 2: 0}
    assert [e["ts"] for e in doc["traceEvents"] if e["ph"] == "X"] == [0.0, 1e6, 3e6]  # seconds -> microseconds
    with pytest.raises(ValueError, match="units_per_second must be positive"):
        chrome_trace(trace, units_per_second=0)

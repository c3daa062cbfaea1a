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

from gpipe_core import GPipe, Trace
from gpipe_core.schedules.schedule import flatten
from gpipe_core.schedules.zoo import BUILTINS
from gpipe_core.sim import theory
from gpipe_core.sim.perfetto import chrome_trace, table_trace, write

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


def flows(doc: dict) -> list[tuple[dict, dict]]:
    """(start, finish) pairs of the document's flow events, matched by id."""
    starts = {e["id"]: e for e in doc["traceEvents"] if e["ph"] == "s"}
    ends = {e["id"]: e for e in doc["traceEvents"] if e["ph"] == "f"}
    assert starts.keys() == ends.keys()
    return [(starts[i], ends[i]) for i in sorted(starts)]


def messages_between_devices(table: list, placement: list[int]) -> set[tuple[int, int, int]]:
    """(micro-batch, from stage, to stage) of every message a table sends from one device to another."""
    S, out = len(placement), set()
    for a in flatten(table):
        to = a.stage + 1 if a.kind == "F" else a.stage - 1 if a.kind in ("B", "I") else -1
        if 0 <= to < S and placement[to] != placement[a.stage]:
            out.add((a.microbatch, a.stage, to))
    return out


@pytest.mark.parametrize("name", ["1f1b", "zbv", "dualpipev", "interleaved"])
def test_every_hop_between_devices_is_one_arrow_from_sender_to_receiver(name: str) -> None:
    from gpipe_core.sim.comm import Comm
    from gpipe_core.sim.simulate import Costs

    b, K, M = BUILTINS[name], 4, 8
    table, placement = b.build(M, K), b.placement(K)
    doc = table_trace(table, K, Costs(1, 2, input_grad=1, weight_grad=1, comm=Comm(latency=0.5)), placement=placement)
    slices = {(e["args"]["kind"], e["args"]["microbatch"], e["args"]["stage"]): e
              for e in doc["traceEvents"] if e["ph"] == "X"}
    arrows = flows(doc)
    assert {(s["args"]["microbatch"], s["args"]["from_stage"], s["args"]["to_stage"]) for s, _ in arrows} == \
        messages_between_devices(table, placement) and len(arrows) == len(messages_between_devices(table, placement))
    for s, f in arrows:
        i, src, dst = s["args"]["microbatch"], s["args"]["from_stage"], s["args"]["to_stage"]
        sender = next(e for k, e in slices.items() if k[1:] == (i, src) and k[0] in ("F" if dst > src else "BI"))
        assert s["tid"] == sender["tid"] == placement[src] and f["tid"] == placement[dst] and f["bp"] == "e"
        assert sender["ts"] <= s["ts"] <= sender["ts"] + sender["dur"]  # bound to the sending slice
        assert f["ts"] - (sender["ts"] + sender["dur"]) >= 500 - 1e-6  # the hop's 0.5 units (1 ms each) at least


def test_a_real_run_draws_its_hops_and_none_inside_a_device() -> None:
    x, y = batch(n=12)
    with GPipe(small_model(layers=12), partitions=2, chunks=4, schedule="zbv", checkpoint="except_last") as pipe:
        pipe.step(x, y, CE, seed=0)
    arrows = flows(chrome_trace(pipe.trace))
    got = {(s["args"]["microbatch"], s["args"]["from_stage"], s["args"]["to_stage"]) for s, _ in arrows}
    assert got == messages_between_devices(pipe.table, pipe.placement) and len(arrows) == len(got)
    assert not any(pipe.placement[s["args"]["from_stage"]] == pipe.placement[s["args"]["to_stage"]] for s, _ in arrows)
    assert all(f["ts"] >= s["ts"] for s, f in arrows)  # a message is read after it was sent (one clock)

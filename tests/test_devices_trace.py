"""Device lists are checked at construction, and the trace turns raw stamps into rows and seconds."""

from __future__ import annotations

import pytest
import torch

from gpipe_core.engine.devices import parse_device, resolve_devices
from gpipe_core.engine.trace import Clock, Trace


def test_devices_resolve_one_per_device() -> None:
    cpu = torch.device("cpu")
    assert resolve_devices("cpu", 3) == [cpu] * 3
    assert resolve_devices(["cpu"], 2) == [cpu] * 2
    assert parse_device(torch.device("cpu")) == cpu
    if not torch.cuda.is_available():
        assert resolve_devices(None, 2) == [cpu] * 2
        with pytest.raises(ValueError, match=r"CUDA is not available here: use 'cpu'"):
            parse_device(0)
    with pytest.raises(ValueError, match=r"got 3 devices for 2 stages"):
        resolve_devices(["cpu"] * 3, 2)


def test_trace_from_stamps_rows_bubble_and_busy() -> None:
    clock = Clock()
    cpu = torch.device("cpu")
    stamps = [(0, cpu, [(0, "F", 0.0, 1.0), (0, "B", 2.0, 4.0)]),
              (1, cpu, [(0, "F", 1.0, 2.0), (0, "I", 2.0, 3.0), (0, "W", 3.0, 4.0)]),
              (2, cpu, [(0, "F", 0.5, 1.0)])]
    trace = Trace.from_stamps(2, stamps, clock, placement=[0, 1, 0])
    assert [e.start for e in trace.events] == sorted(e.start for e in trace.events)
    assert trace.span == 4.0
    assert trace.busy(0) == pytest.approx(3.5) and trace.busy(1) == pytest.approx(3.0)
    assert trace.bubble() == pytest.approx(1 - 6.5 / 8)
    assert trace.row(2) == 0 and trace.shifted().placement == [0, 1, 0]


def test_clock_stamps_host_time_on_cpu() -> None:
    clock = Clock()
    clock.begin([torch.device("cpu")])
    a, b = clock.now(), clock.now()
    assert isinstance(a, float) and b >= a and clock.seconds(a, torch.device("cpu")) == a

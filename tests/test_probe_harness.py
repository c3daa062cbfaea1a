"""The probe's harness: a fresh child per task, limits from outside, replies nothing else can write.

Each test runs the real probe (unsandboxed, on the grading view) on a small
learner module and reads what the judge would: a call that resets the
interval timer still stops at its limit, a child that dies costs only its
call, bytes written into a reply pipe mark that call tampered, lines without
the request's key are counted as forged, a check whose call ran out of time
runs no further calls, and a check never sees what an earlier check's
learner code left behind.
"""

from __future__ import annotations

from typing import Any

from autograder.judge.base import Ask
from autograder.judge.extract import extract, source_notebook
from autograder.judge.grade import probe, tampering
from autograder.judge.local import run_probe_locally
from autograder.judge.probe_io import read_probe_output
from autograder.selftest.fakeclass import replace_cell

A = "02_partitioner"


def run(source: str, calls: list[tuple[str, tuple, float, str]]) -> tuple[dict, list[Any]]:
    """Probe ``source`` (the partition_optimal cell) with (function, args, timeout, group) calls."""
    ex = extract(A, replace_cell(source_notebook(A), "partition_optimal", source))
    ask = Ask()
    replies = []
    for fn, args, timeout, group in calls:
        ask.group = group
        replies.append(ask.call(fn, *args, timeout=timeout))
    response = probe(ex, {"assignment": A, "calls": ask.calls}, run_probe_locally)
    ask.attach(response)
    return response, replies


def test_a_reset_timer_does_not_outlive_the_limit_and_the_check_stops_there() -> None:
    src = ("def partition_optimal(costs, K):\n    import signal, time\n    signal.setitimer(signal.ITIMER_REAL, 0)\n"
           "    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    while True:\n        time.sleep(0.05)\n")
    response, (slow, skipped, other) = run(src, [("partition_optimal", ([1, 2], 1), 1.0, "a"),
                                                 ("partition_optimal", ([1, 2], 1), 1.0, "a"),
                                                 ("partition_by_count", (4, 2), 30.0, "b")])
    assert "timeout" in slow.raw and slow.raw["timeout"] == 1.0
    assert skipped.raised("NotRun"), skipped.raw
    assert other.value() == [2, 2] and response["ended"] == "ok"


def test_a_child_that_dies_costs_its_call_and_the_batch_goes_on() -> None:
    src = ("def partition_optimal(costs, K):\n    if K == 2:\n        import os\n        os._exit(3)\n"
           "    return [len(costs)]\n")
    _, (dead, alive) = run(src, [("partition_optimal", ([1, 2], 2), 30.0, "a"),
                                 ("partition_optimal", ([1, 2], 1), 30.0, "a")])
    assert dead.raised("ProcessDied") and "exit status 3" in dead.error["message"], dead.raw
    assert alive.value() == [2]


def test_bytes_written_into_a_reply_pipe_mark_the_call_tampered_and_hold_it() -> None:
    src = ("def partition_optimal(costs, K):\n    import os\n    for fd in range(3, 40):\n        try:\n"
           "            os.write(fd, b'{\"ok\": [1]}\\n')\n        except OSError:\n            pass\n"
           "    return [len(costs)]\n")
    response, (forged,) = run(src, [("partition_optimal", ([1, 2], 1), 30.0, "a")])
    assert forged.raised("Tampered") and response["tampered"] == [0], forged.raw
    assert tampering(response), "a tampered call must hold the submission"


def test_lines_without_the_key_are_forged_and_never_replies() -> None:
    key = "k" * 32
    out = (b'{"probe": 2, "view": "02_partitioner", "key": "kkkk"}\n{"i": 0, "ok": 5}\n' +
           b"[" * 200_000 + b"]" * 200_000 + b"\n" +
           f'{{"probe": 2, "view": "02_partitioner", "key": "{key}"}}\n{{"i": 0, "ok": 1, "key": "{key}"}}\n'.encode() +
           f'{{"done": true, "key": "{key}"}}\n'.encode())
    response = read_probe_output(out, 0, False, key=key)
    assert response["forged"] == 3 and response["replies"][0]["ok"] == 1 and response["ended"] == "ok"
    assert response["header"]["view"] == "02_partitioner" and tampering(response)


def test_a_later_check_never_sees_what_an_earlier_checks_code_left_behind() -> None:
    """The first check patches torch in its child; the next check, in a fresh child, finds torch intact."""
    src = ("def partition_optimal(costs, K):\n    import torch\n    if K == 1:\n"
           "        torch.equal = lambda *a: 'patched'\n        return [len(costs)]\n"
           "    return [1 if torch.equal(torch.ones(1), torch.zeros(1)) == 'patched' else 2] * K\n")
    _, (first, second) = run(src, [("partition_optimal", ([1, 2], 1), 30.0, "a"),
                                   ("partition_optimal", ([1, 2], 2), 30.0, "b")])
    assert first.value() == [2] and second.value() == [2, 2]

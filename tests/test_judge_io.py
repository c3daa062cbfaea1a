"""What the judge reads: the probe codec, the probe's output and the definitions extracted from a notebook.

The judge never runs learner code; everything it knows arrives as plain data
through these three doors, so each is tested on hostile input: values that
lie about equality, tensor subclasses, lines written twice, statements hidden
among definitions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import torch
from helpers.liars import EqualsEverything, SneakyTensor

from autograder import course_root
from autograder.judge import Foreign, read_probe_output
from autograder.judge.extract import extract
from autograder.judge.probe_codec import decode, encode
from autograder.selftest.fakeclass import replace_cell


def solution(assignment: str) -> Path:
    return next((course_root() / "solutions" / assignment).glob("*.ipynb"))


# ---- codec -------------------------------------------------------------------------------------------------

def roundtrip(value: Any) -> Any:
    return decode(json.loads(json.dumps(encode(value))))


def test_codec_keeps_plain_values_and_exact_tensors() -> None:
    t = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    back = roundtrip([1, 2.5, "a", None, True, (3, [t])])
    assert back[:5] == [1, 2.5, "a", None, True] and type(back[5]) is tuple
    assert back[5][1][0].dtype == torch.float64 and torch.equal(back[5][1][0], t)
    assert roundtrip(float("nan")) != roundtrip(float("nan"))  # NaN survives as NaN
    assert roundtrip(torch.zeros(0, 3)).shape == (0, 3)


def test_codec_reads_true_values_of_integer_lookalikes() -> None:
    assert roundtrip(EqualsEverything(3)) == 3 and roundtrip(EqualsEverything(3)) != 4
    assert type(roundtrip(np.int64(7))) is int and roundtrip(np.float32(0.5)) == 0.5


def test_codec_never_trusts_tensor_subclasses_or_unknown_objects() -> None:
    sneaky = roundtrip(torch.zeros(2).as_subclass(SneakyTensor))
    assert isinstance(sneaky, Foreign) and "subclass" in repr(sneaky)
    other = roundtrip(object())
    assert other != other and not (other == 0)


# ---- probe output ------------------------------------------------------------------------------------------

def test_probe_output_keeps_finished_calls_of_a_killed_probe() -> None:
    out = b'{"probe": 1, "view": "x"}\nnoise\n{"i": 0, "ok": 1}\n{"i": 1, "ok": 2}\n'
    response = read_probe_output(out, None, True)
    assert response["replies"][1]["ok"] == 2 and "time" in response["ended"] and not response["tampered"]


def test_probe_output_marks_a_call_answered_twice_as_tampered() -> None:
    out = b'{"probe": 1}\n{"i": 0, "ok": 1}\n{"i": 0, "ok": 5}\n{"done": true}\n'
    response = read_probe_output(out, 0, False)
    assert response["tampered"] == [0] and response["replies"][0]["error"]["type"] == "Tampered"
    assert response["ended"] == "ok"


# ---- extraction --------------------------------------------------------------------------------------------

HOOKS = '''import os
from gpipe_core.engine.partition import balance_by_count
get_ipython().events.register("post_run_cell", lambda r: None)
torch.equal = lambda a, b: True
LIMIT = 3
Alias = list[list[int]]

@staticmethod
def partition_by_count(num_layers, K, fill=-1):
    return balance_by_count(num_layers, K)

class Weird(metaclass=type):
    pass
%time x = 1
'''


def test_extraction_keeps_definitions_and_drops_statements() -> None:
    nb = replace_cell(nbformat.read(solution("02_partitioner"), as_version=4), "partition_by_count", HOOKS)
    got = extract("02_partitioner", nb)
    assert "partition_by_count" in got.defined and "Weird" not in got.defined
    assert "import os" not in got.source and "events.register" not in got.source and "torch.equal" not in got.source
    assert "LIMIT = 3" in got.source and "balance_by_count" in got.source and "Alias" in got.source
    reasons = "\n".join(got.dropped)
    for what in ("import of os", "top-level Expr", "an assignment of something other", "class Weird",
                 "line 3", "line 4"):
        assert what in reasons, (what, reasons)
    compile(got.source, "learner.py", "exec")


def test_extraction_reports_a_cell_that_does_not_parse() -> None:
    nb = replace_cell(nbformat.read(solution("02_partitioner"), as_version=4), "partition_optimal", "def broken(:\n")
    got = extract("02_partitioner", nb)
    assert any("partition_optimal: does not parse" in d for d in got.dropped)
    assert "partition_optimal" not in got.defined and "partition_by_count" in got.defined

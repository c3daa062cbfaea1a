"""One schedule registry, one positive-integer check, and M checked once against the table (issue #26 item 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gpipe_core import GPipe
from gpipe_core.engine.common import Loss, is_positive_int, positive_int
from gpipe_core.engine.microbatch import split
from gpipe_core.engine.partition import balance_by_count, validate_balance
from gpipe_core.schedules.schedule import check_sizes, gpipe_schedule, one_f_one_b_schedule
from gpipe_core.schedules.validation import resolve
from gpipe_core.schedules.zoo import BUILTINS, lookup


def model(layers: int = 4) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(*(nn.Linear(3, 3) for _ in range(layers)))


def test_the_classic_schedules_are_entries_of_the_one_registry() -> None:
    assert BUILTINS["gpipe"].build is gpipe_schedule and BUILTINS["1f1b"].build is one_f_one_b_schedule
    assert lookup("ZB-H1") is BUILTINS["zb-h1"]
    assert resolve("1F1B", 3, 2) == one_f_one_b_schedule(3, 2)
    assert resolve(BUILTINS["gpipe"], 3, 2) == gpipe_schedule(3, 2)


def test_an_unknown_name_lists_the_registry() -> None:
    with pytest.raises(ValueError, match=r"unknown schedule 'zero-bubble': use one of \[.*'zb-h1'.*\]"):
        GPipe(model(), partitions=2, chunks=2, schedule="zero-bubble")


def test_the_integer_check_is_one_and_takes_numpy_integers_but_no_bool() -> None:
    for good in (1, 7, np.int64(3), np.int32(2), np.uint8(4)):
        assert is_positive_int(good) and positive_int(good, "x") == int(good)
    for bad in (0, -1, True, False, 2.0, "2", None, np.float64(2.0)):
        assert not is_positive_int(bad)
        with pytest.raises(ValueError, match="x must be a positive integer"):
            positive_int(bad, "x")
    # every entry point agrees: partition, balance, micro-batching, schedules, GPipe
    assert balance_by_count(4, np.int64(2)) == [2, 2]
    assert validate_balance([np.int64(2), np.int32(2)], 4) == [2, 2]
    assert len(split(torch.zeros(4, 1), np.int64(2))) == 2
    check_sizes(np.int64(2), np.int16(2))
    pipe = GPipe(model(), partitions=np.int64(2), chunks=np.int64(2))
    assert (pipe.K, pipe.chunks) == (2, 2) and type(pipe.chunks) is int
    for call in (lambda: balance_by_count(4, True), lambda: check_sizes(2, True),
                 lambda: GPipe(model(), partitions=2, chunks=True), lambda: validate_balance([True, 3], 4)):
        with pytest.raises(ValueError, match="positive integer"):
            call()


def test_a_table_for_another_m_names_chunks() -> None:
    with pytest.raises(ValueError, match=r"runs micro-batches 0..2 \(M=3\) but chunks=4: pass chunks=3"):
        GPipe(model(), partitions=2, chunks=4, schedule=gpipe_schedule(3, 2))
    with pytest.raises(ValueError, match=r"\(M=4\) but chunks=2: pass chunks=4, or build the table for M=2"):
        GPipe(model(), partitions=2, chunks=2, schedule=one_f_one_b_schedule(4, 2))
    pipe = GPipe(model(), partitions=2, chunks=3, schedule=gpipe_schedule(3, 2))
    assert pipe.table == gpipe_schedule(3, 2)


def test_the_runtime_reads_m_from_its_table_and_refuses_other_inputs() -> None:
    pipe = GPipe(model(), partitions=2, chunks=3, executor="inline")
    assert pipe._runtime.M == 3  # noqa: SLF001 - the runtime's own reading of the table
    loss = Loss(nn.functional.mse_loss, [torch.zeros(1, 3)] * 2, [0.5, 0.5])
    with pytest.raises(ValueError, match=r"the table runs M=3 micro-batches but 2 inputs came: split the batch into 3"):
        pipe._runtime.run([torch.zeros(1, 3)] * 2, loss, seed=0, measure_memory=False)  # noqa: SLF001
    assert pipe._runtime.step is None  # nothing of a step outlives it

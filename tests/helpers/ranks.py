"""Real ranks for the distributed tests: torchrun bounded in time, a worker's loop, and the comparison.

``tests/test_distributed.py`` and ``tests/test_export.py`` both start 2 or 4
gloo ranks that run the test file as a script, let each configuration take
two accumulated steps, and compare what rank 0 saved with the sequential model
and the single-process engine. What they share lives here once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[2]
Result = tuple[list[float], list[Any]]  # the losses of the steps, the whole model's gradients after them


def run_bounded(cmd: list[str], timeout: float, what: str) -> tuple[int, str, str, float]:
    """Run ``cmd`` from the repository root in its own session; kill the whole session on timeout (a test failure)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{what} did not finish in {timeout}s:\n{out}\n{err}")
    return proc.returncode, out, err, time.monotonic() - start


def torchrun(nprocs: int, args: list[str], timeout: float) -> tuple[int, str, str, float]:
    """Run ``torchrun --standalone`` (a free localhost port) on ``nprocs`` ranks, bounded in time."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nprocs}", "--standalone", *args]
    return run_bounded(cmd, timeout, "torchrun")


def save_steps(out: str, pipes: Iterable[Callable[[], Any]], batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
               loss: Callable[..., torch.Tensor], seeds: Sequence[int]) -> None:
    """In a rank: each pipe takes one step per seed (no zero_grad, so they accumulate); rank 0 saves the results."""
    results: list[Result] = []
    for make_pipe in pipes:
        x, y = batch()
        pipe = make_pipe()
        losses = [pipe.step(x, y, loss, seed=s).item() for s in seeds]
        whole = pipe.gather_model()
        if whole is not None:
            results.append((losses, [p.grad for p in whole.parameters()]))
    if dist.get_rank() == 0:
        torch.save(results, out)
    dist.destroy_process_group()


def assert_matches(got: Result, want: Result, what: str) -> None:
    torch.testing.assert_close(torch.tensor(got[0]), torch.tensor(want[0]), rtol=1e-5, atol=1e-7,
                               msg=lambda m: f"losses differ from the {what}: {m}")
    assert len(got[1]) == len(want[1]), f"{len(got[1])} gradients against the {what}'s {len(want[1])}"
    for j, (a, b) in enumerate(zip(got[1], want[1])):
        assert a is not None, f"parameter {j} has no gradient ({what})"
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=lambda m, j=j: f"grad {j} vs {what}: {m}")

"""gpipe_core.distributed: torch.distributed.pipelining gives the engine's loss and gradients.

Real processes: torchrun starts 2 and 4 gloo ranks on this machine, which run
this file as a script (the ``worker_*`` functions below, chosen by argv) and
leave their results in a file; the test process compares them with the
single-process engine (gpipe_core.GPipe) and the sequential model. In-process
tests use a one-rank gloo group for the API's checks. Every launch is bounded
by a timeout that kills the whole process group, so no test can hang.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from helpers.ranks import assert_matches, run_bounded, save_steps, torchrun
from torch import nn

from gpipe_core import GPipe, sequential_step
from gpipe_core.cli import build_parser
from gpipe_core.distributed import DistributedPipe, default_device, init, one_process, torchrun_command, worker_argv
from gpipe_core.workloads.models import mlp

LOSS = nn.functional.cross_entropy
N, M, SEEDS = 8, 4, (11, 12)  # batch, micro-batches, the seeds of two steps whose gradients accumulate
BALANCES = {1: [6], 2: [4, 2], 4: [1, 2, 2, 1]}  # uneven on purpose
PAST_THE_FAILURE = "a rank went on past the failed step"  # what worker_fail prints if its step did not raise
CONFIGS = [("gpipe", "never", 0.0), ("1f1b", "except_last", 0.2), ("gpipe", "always", 0.2), ("1f1b", "never", 0.0)]


def make_model(dropout: float) -> nn.Sequential:
    torch.manual_seed(0)
    return mlp(5, 12, classes=4, dropout=dropout)  # 6 layers


def make_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(N, 12, generator=g), torch.randint(0, 4, (N,), generator=g)


def references(K: int, schedule: str, checkpoint: str, dropout: float) -> dict[str, tuple[list[float], list]]:
    """Two accumulated steps on the sequential model and on the single-process engine."""
    x, y = make_batch()
    seq = make_model(dropout)
    seq_losses = [sequential_step(seq, x, y, LOSS, balance=BALANCES[K], chunks=M, seed=s).item() for s in SEEDS]
    eng = make_model(dropout)
    pipe = GPipe(eng, balance=BALANCES[K], chunks=M, schedule=schedule, checkpoint=checkpoint, devices="cpu")
    eng_losses = [pipe.step(x, y, LOSS, seed=s).item() for s in SEEDS]
    pipe.close()
    return {"sequential": (seq_losses, [p.grad for p in seq.parameters()]),
            "engine": (eng_losses, [p.grad for p in eng.parameters()])}


# ---------------------------------------------------------------- launching torchrun, bounded in time


def processes_mentioning(token: str) -> list[int]:
    """Live processes whose command line contains ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if token in cmdline:
                found.append(int(entry.name))
    return found


@pytest.mark.distributed
@pytest.mark.parametrize("K", [2, 4])
@pytest.mark.timeout(150)
def test_processes_match_engine_and_sequential(K: int, tmp_path: Path) -> None:
    out = tmp_path / "results.pt"
    code, stdout, stderr, _ = torchrun(K, [__file__, "equivalence", str(out)], timeout=120)
    assert code == 0, f"torchrun failed:\n{stdout}\n{stderr}"
    results = torch.load(out)
    assert len(results) == len(CONFIGS)
    for (schedule, checkpoint, dropout), got in zip(CONFIGS, results):
        refs = references(K, schedule, checkpoint, dropout)
        label = f"K={K} {schedule} checkpoint={checkpoint} dropout={dropout}"
        assert_matches(got, refs["sequential"], f"sequential model ({label})")
        assert_matches(got, refs["engine"], f"single-process engine ({label})")


@pytest.mark.distributed
@pytest.mark.timeout(120)
def test_a_failing_rank_stops_the_run_and_leaves_no_process(tmp_path: Path) -> None:
    token = str(tmp_path / "failure-marker")  # in every worker's command line
    code, stdout, stderr, _ = torchrun(2, [__file__, "fail", token], timeout=90)  # a rank left waiting: fails here
    assert code != 0, f"the run should fail:\n{stdout}\n{stderr}"
    assert "stage 1 failed in the forward of micro-batch 2: ValueError: planted failure" in stderr
    assert PAST_THE_FAILURE not in stderr, f"a rank finished the failed step as if nothing happened:\n{stderr}"
    left = processes_mentioning(token)
    assert not left, f"processes left behind: {left}"


@pytest.mark.distributed
@pytest.mark.timeout(150)
def test_gpipe_train_distributed_reports_like_gpipe_train(tmp_path: Path) -> None:
    gantt = tmp_path / "g.png"
    cmd = [sys.executable, "-m", "gpipe_core.cli", "train", "--distributed", "-K", "2", "-M", "4", "--layers", "6",
           "--hidden-dim", "32", "--batch-size", "64", "--steps", "6", "--lr", "3e-3", "--schedule", "1f1b",
           "--quiet", "--gantt", str(gantt)]
    code, out, err, _ = run_bounded(cmd, 120, "gpipe train --distributed")
    assert code == 0, f"{out}\n{err}"
    assert "on 2 processes (gloo, cpu)" in out and "Schedule1F1B" in out
    losses = [float(v) for v in re.search(r"loss per step: (.*)", out).group(1).split()]
    assert len(losses) == 6 and losses[-1] < 0.9 * losses[0]
    assert re.search(r"speedup \d+\.\d+x", out)
    assert "theory (K-1)/(M+K-1) = (2-1)/(4+2-1) = 0.200" in out
    bubble = float(re.search(r"bubble: measured (\S+),", out).group(1))
    assert 0.0 < bubble < 1.0
    assert float(re.search(r"sequential model: (\S+)", out).group(1)) < 1e-5
    assert "not measured distributed" in out
    assert gantt.stat().st_size > 1000


# ---------------------------------------------------------------- in-process: one rank, fast


@pytest.fixture
def one_rank():
    with one_process():
        yield


@pytest.mark.parametrize("schedule, checkpoint, dropout", CONFIGS)
def test_one_rank_matches_engine_and_sequential(one_rank, schedule: str, checkpoint: str, dropout: float) -> None:
    x, y = make_batch()
    model = make_model(dropout)
    pipe = DistributedPipe(model, chunks=M, schedule=schedule, checkpoint=checkpoint, device="cpu")
    got = ([pipe.step(x, y, LOSS, seed=s).item() for s in SEEDS], [p.grad for p in model.parameters()])
    refs = references(1, schedule, checkpoint, dropout)
    assert_matches(got, refs["sequential"], "sequential model")
    assert_matches(got, refs["engine"], "single-process engine")
    trace = pipe.gather_trace()
    kinds = sorted((e.kind, e.microbatch) for e in trace.events)
    recomputed = {"always": M, "except_last": M - 1, "never": 0}[checkpoint]
    assert kinds.count(("F", 0)) == 1 and sum(k == "B" for k, _ in kinds) == M
    assert sum(k == "R" for k, _ in kinds) == recomputed
    assert all(0 <= e.start <= e.end for e in trace.events)


def test_the_api_says_what_to_fix(one_rank) -> None:
    x, y = make_batch()
    with pytest.raises(ValueError, match="one process per stage"):
        DistributedPipe(make_model(0.0), balance=[3, 3])
    with pytest.raises(ValueError, match="unknown schedule"):
        DistributedPipe(make_model(0.0), schedule="interleaved")
    with pytest.raises(ValueError, match="torch.utils.checkpoint"):
        DistributedPipe(make_model(0.0), checkpoint=object())  # type: ignore[arg-type]
    pipe = DistributedPipe(make_model(0.0), chunks=3)
    with pytest.raises(ValueError, match="multiple of 3"):
        pipe.step(x, y, LOSS)  # 8 samples, M = 3
    pipe = DistributedPipe(make_model(0.0), chunks=4)
    pipe.step(x, y, LOSS)
    with pytest.raises(ValueError, match="different loss_fn"):
        pipe.step(x, y, nn.functional.nll_loss)


def test_without_a_process_group_it_says_how_to_start() -> None:
    assert not dist.is_initialized()
    with one_process(), pytest.raises(RuntimeError, match="already exists"), one_process():
        pass
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedPipe(make_model(0.0))
    env = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE") if k in os.environ}
    try:
        with pytest.raises(RuntimeError, match="torchrun --nproc-per-node K -m gpipe_core.distributed"):
            init("cpu")
    finally:
        os.environ.update(env)


def test_device_choice_needs_a_gpu_per_process(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert default_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert default_device("auto") == torch.device("cpu")  # NCCL cannot put two ranks on one GPU
    with pytest.raises(ValueError, match="NCCL needs a GPU of its own"):
        default_device("cuda")
    assert default_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ValueError, match="CUDA is not available here: use --device cpu"):
        default_device("cuda")


def test_launcher_forwards_every_train_flag() -> None:
    argv = ["train", "--distributed", "-K", "4", "-M", "16", "--layers", "8", "--hidden-dim", "64", "--batch-size",
            "32", "--checkpoint", "never", "--schedule", "1f1b", "--steps", "3", "--lr", "0.01", "--dropout", "0.0",
            "--device", "cpu", "--gantt", "g.png", "--quiet", "--seed", "7"]
    args = build_parser().parse_args(argv)
    again = build_parser().parse_args(["train", *worker_argv(args)])
    launcher_only = {"distributed", "nnodes", "node_rank", "rdzv_endpoint", "func"}
    assert {k: v for k, v in vars(again).items() if k not in launcher_only} == \
        {k: v for k, v in vars(args).items() if k not in launcher_only}
    assert not again.distributed
    cmd = torchrun_command(args)
    assert "--nproc-per-node=4" in cmd and "--standalone" in cmd
    assert cmd[cmd.index("-m", 2) + 1] == "gpipe_core.distributed"
    two = build_parser().parse_args([*argv, "--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", "node0:29500"])
    cmd = torchrun_command(two)
    assert "--nproc-per-node=2" in cmd and "--node-rank=1" in cmd and "--rdzv-endpoint=node0:29500" in cmd
    assert "--standalone" not in cmd
    with pytest.raises(ValueError, match="--rdzv-endpoint HOST:PORT"):
        torchrun_command(build_parser().parse_args([*argv, "--nnodes", "2"]))
    with pytest.raises(ValueError, match="do not divide"):
        torchrun_command(build_parser().parse_args([*argv, "--nnodes", "3", "--rdzv-endpoint", "h:1"]))


# ---------------------------------------------------------------- the workers torchrun starts


class _Boom(nn.Module):
    """Raises on the micro-batch whose input holds NaN (micro-batch 2 of the failure run)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.isnan(x).any():
            raise ValueError("planted failure")
        return x


def worker_equivalence(out: str) -> None:
    init("cpu")
    K = dist.get_world_size()
    pipes = [lambda s=s, c=c, d=d: DistributedPipe(make_model(d), balance=BALANCES[K], chunks=M, schedule=s,
                                                   checkpoint=c, device="cpu") for s, c, d in CONFIGS]
    save_steps(out, pipes, make_batch, LOSS, SEEDS)


def worker_fail(_token: str) -> None:
    init("cpu")
    model = nn.Sequential(nn.Linear(4, 4), _Boom(), nn.Linear(4, 2))
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    x[4:6] = float("nan")  # micro-batch 2 of 4
    pipe = DistributedPipe(model, balance=[1, 2], chunks=4, device="cpu")
    pipe.step(x, y, LOSS)
    print(PAST_THE_FAILURE, file=sys.stderr, flush=True)  # never reached: the step raises on every rank


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["equivalence", "fail"])
    parser.add_argument("path")
    cli = parser.parse_args()
    {"equivalence": worker_equivalence, "fail": worker_fail}[cli.mode](cli.path)

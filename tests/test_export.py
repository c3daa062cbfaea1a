"""Our tables on torch's runtime (``_PipelineScheduleRuntime`` over gloo), one process per device.

torchrun starts 2 and 4 ranks that run this file as a script (``worker`` below)
and leave their losses and gradients in a file; the test process compares them
with gpipe_core.GPipe running the same table and with the sequential model.
Every launch is bounded by a timeout that kills its whole process group.

Every built-in goes over once, the frontier's included (DualPipeV's overlapped
F&B cells become torch's OVERLAP_F_B), and so does torch's own
``ScheduleDualPipeV`` imported into our table format (``torch:`` below): read
by :func:`~gpipe_core.distributed.torch_ir.import_torch`, validated, then
handed back to torch's runtime and to our engine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from helpers.ranks import assert_matches, save_steps, torchrun
from torch import nn

from gpipe_core import GPipe, sequential_step
from gpipe_core.distributed import torch_ir
from gpipe_core.schedules.schedule import ScheduleLike
from gpipe_core.schedules.zoo import BUILTINS
from gpipe_core.workloads.models import mlp

LOSS = nn.functional.cross_entropy
N, M, SEEDS = 16, 4, (11, 12)  # batch, micro-batches, two steps whose gradients accumulate
CONFIGS = {2: [("zb-h1", "never", 0.2), ("interleaved", "except_last", 0.2), ("zb-h2", "always", 0.0),
               ("dualpipev", "never", 0.2), ("torch:ScheduleDualPipeV", "except_last", 0.2), ("v-min", "always", 0.2)],
           4: [("zbv", "never", 0.2), ("interleaved", "always", 0.0), ("v-zb", "except_last", 0.2),
               ("v-half", "never", 0.0), ("looped-bfs", "always", 0.2)]}  # (schedule, checkpoint, dropout); M = 4


def make_model(dropout: float) -> nn.Sequential:
    torch.manual_seed(0)
    return mlp(7, 12, classes=4, dropout=dropout)  # 8 layers: one per stage at K=4, V=2


def make_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(N, 12, generator=g), torch.randint(0, 4, (N,), generator=g)


def balance(K: int, V: int) -> list[int]:
    return [8 // (K * V)] * (K * V)


def schedule_of(name: str, K: int) -> tuple[ScheduleLike, int, list[int]]:
    """(schedule, V, placement) of a configuration: a built-in's name, or ``torch:Class`` for torch's table."""
    if name.startswith("torch:"):
        imported = torch_ir.import_torch(name.removeprefix("torch:"), K, M)
        assert imported.valid and imported.table is not None, imported.error
        return imported.table, imported.V, imported.placement
    b = BUILTINS[name]
    return name, b.virtual, b.placement(K)


def references(K: int, name: str, checkpoint: str, dropout: float) -> dict[str, tuple[list[float], list]]:
    x, y = make_batch()
    schedule, V, placement = schedule_of(name, K)
    seq = make_model(dropout)
    seq_losses = [sequential_step(seq, x, y, LOSS, balance=balance(K, V), chunks=M, seed=s).item()
                  for s in SEEDS]
    eng = make_model(dropout)
    with GPipe(eng, balance=balance(K, V), chunks=M, schedule=schedule, placement=placement,
               checkpoint=checkpoint) as pipe:
        eng_losses = [pipe.step(x, y, LOSS, seed=s).item() for s in SEEDS]
    return {"sequential": (seq_losses, [p.grad for p in seq.parameters()]),
            "engine": (eng_losses, [p.grad for p in eng.parameters()])}


@pytest.mark.distributed
@pytest.mark.parametrize("K", [2, 4])
@pytest.mark.timeout(240)
def test_our_tables_on_torchs_runtime_match_engine_and_sequential(K: int, tmp_path: Path) -> None:
    out = tmp_path / "results.pt"
    code, stdout, stderr, _ = torchrun(K, [__file__, str(out)], timeout=200)
    assert code == 0, f"torchrun failed:\n{stdout}\n{stderr}"
    results = torch.load(out)
    assert len(results) == len(CONFIGS[K])
    for (name, checkpoint, dropout), got in zip(CONFIGS[K], results):
        refs = references(K, name, checkpoint, dropout)
        label = f"K={K} {name} checkpoint={checkpoint} dropout={dropout}"
        assert_matches(got, refs["sequential"], f"sequential model ({label})")
        assert_matches(got, refs["engine"], f"single-process engine ({label})")


def worker(out: str) -> None:
    from gpipe_core.distributed import init
    from gpipe_core.distributed.export import TablePipe

    init("cpu")
    K = dist.get_world_size()

    def table_pipe(name: str, checkpoint: str, dropout: float) -> TablePipe:
        schedule, V, placement = schedule_of(name, K)
        return TablePipe(make_model(dropout), balance=balance(K, V), chunks=M, schedule=schedule, virtual=V,
                         placement=placement, checkpoint=checkpoint, device="cpu")

    save_steps(out, [lambda c=c: table_pipe(*c) for c in CONFIGS[K]], make_batch, LOSS, SEEDS)


if __name__ == "__main__":
    worker(sys.argv[1])


def test_a_hand_written_table_in_one_process(tmp_path: Path) -> None:
    """Two stages on one rank (K=1, V=2) with a table passed as data: no launch, same gradients."""
    from gpipe_core.distributed import one_process
    from gpipe_core.distributed.export import TablePipe
    from gpipe_core.schedules.schedule import ticks_from_orders
    from gpipe_core.schedules.zoo import zb_h1_schedule

    # ZB-H1's two stages, both on rank 0: one device runs them in the table's tick order
    table = ticks_from_orders([[a for tick in zb_h1_schedule(M, 2) for a in tick]], [0, 0])
    x, y = make_batch()
    with pytest.raises(RuntimeError, match="no process group"):
        TablePipe(make_model(0.0), balance=[4, 4], chunks=M, schedule=table, virtual=2, placement=[0, 0])
    with one_process():
        with pytest.raises(ValueError, match="need 2"):
            TablePipe(make_model(0.0), balance=[8], chunks=M, schedule=table, virtual=2, placement=[0, 0])
        model = make_model(0.2)
        pipe = TablePipe(model, balance=[4, 4], chunks=M, schedule=table, virtual=2, placement=[0, 0])
        got = ([pipe.step(x, y, LOSS, seed=s).item() for s in SEEDS], [p.grad for p in model.parameters()])
        with pytest.raises(ValueError, match="different loss_fn"):
            pipe.step(x, y, nn.functional.nll_loss)
        # the same table as torch's CSV: its own loader lowers it to the same actions, comms included
        from torch.distributed.pipelining.schedules import _PipelineScheduleRuntime

        from gpipe_core.distributed.torch_ir import write_csv

        path = tmp_path / "table.csv"
        write_csv(table, [0, 0], str(path))
        loaded = _PipelineScheduleRuntime(pipe.stages, n_microbatches=M, loss_fn=pipe._weighted, scale_grads=False)
        loaded._load_csv(str(path))
        assert loaded.pipeline_order_with_comms == pipe._schedule.pipeline_order_with_comms
    seq = make_model(0.2)
    want = ([sequential_step(seq, x, y, LOSS, balance=[4, 4], chunks=M, seed=s).item() for s in SEEDS],
            [p.grad for p in seq.parameters()])
    assert_matches(got, want, "sequential model (one rank, two stages)")

"""The gpipe command: train reports measured numbers, schedule prints the table, sweep plots."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from gpipe_core.cli import build_parser, main
from gpipe_core.schedules.actions import flatten
from gpipe_core.schedules.bidirectional import dualpipe_schedule
from gpipe_core.schedules.zoo import BUILTINS
from gpipe_core.workloads.training import resolve_defaults


def test_train_reports_and_the_loss_falls(capsys, tmp_path) -> None:  # noqa: ANN001
    gantt = tmp_path / "g.png"
    assert main(["train", "--partitions", "2", "--micro-batches", "4", "--layers", "6", "--hidden-dim", "32",
                 "--batch-size", "64", "--steps", "8", "--lr", "3e-3", "--quiet", "--gantt", str(gantt)]) == 0
    out = capsys.readouterr().out
    losses = [float(v) for v in re.search(r"loss per step: (.*)", out).group(1).split()]
    assert len(losses) == 8 and losses[-1] < 0.8 * losses[0]
    one_stage = re.search(r"\(a\) same 4 micro-batches on one stage with \d+ threads?: [\d.,]+ ms, "
                          r"speedup (\d+\.\d+)x \(ideal K\*M/\(M\+K-1\) = 1\.60x\)", out)
    plain = re.search(r"\(b\) plain model, full batch, all \d+ cores: [\d.,]+ ms, speedup (\d+\.\d+)x", out)
    assert one_stage and plain and float(one_stage.group(1)) > 0 and float(plain.group(1)) > 0
    assert "(a) predicts a run on 2 GPUs" in out  # the sentence that says which comparison to believe
    assert "theory (K-1)/(M+K-1) = (2-1)/(4+2-1) = 0.200" in out
    assert re.search(r"stage 1: +\d+\.\d+ MiB measured, +\d+\.\d+ MiB by the law", out)
    diff = float(re.search(r"sequential model: (\S+)", out).group(1))
    assert diff < 1e-5
    assert gantt.stat().st_size > 1000


def test_train_1f1b_and_never(capsys) -> None:  # noqa: ANN001
    assert main(["train", "-K", "3", "-M", "3", "--layers", "6", "--hidden-dim", "16", "--batch-size", "12",
                 "--steps", "2", "--quiet", "--schedule", "1f1b", "--checkpoint", "never", "--device", "cpu"]) == 0
    assert "schedule=1f1b" in capsys.readouterr().out


def test_schedule_prints_the_table(capsys) -> None:  # noqa: ANN001
    assert main(["schedule", "--partitions", "4", "--micro-batches", "4"]) == 0
    out = capsys.readouterr().out
    assert "stage 0: F0   F1   F2   F3    .    .    .    .    .    .   B3   B2   B1   B0" in out


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_schedule_offers_every_builtin_with_costs_a_link_and_memory_beside_time(name: str, capsys,  # noqa: ANN001
                                                                               tmp_path) -> None:  # noqa: ANN001
    """Each device's busy, idle and peak held as the simulator gives them under the same F:I:W and link."""
    from gpipe_core.sim.comm import Comm
    from gpipe_core.sim.simulate import Costs, peak_memory, simulate

    b, K, M, trace = BUILTINS[name], 4, 8, tmp_path / "step.json"
    assert main(["schedule", "-K", str(K), "-M", str(M), "--schedule", name, "--costs", "1:1.5:0.5",
                 "--latency", "0.25", "--message-bytes", "100", "--bandwidth", "400", "--blocking-sends",
                 "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    costs = Costs(1, 2, input_grad=1.5, weight_grad=0.5, comm=Comm(0.25, 400, 100, overlap=False))
    table, placement = b.build(M, K), b.placement(K)
    want = simulate(table, K, costs, placement=placement)
    held = peak_memory(table, K, costs=costs, placement=placement)
    assert f"step {want.span:g}, bubble {want.bubble():.3f}" in out and "0.25 + 100 B / 400 B per unit" in out
    for d in range(K):
        assert f"device {d} | busy {want.busy(d):g}, idle {want.span - want.busy(d):g}, peak held {int(held[d])}" in out
    slices = [e for e in json.loads(trace.read_text())["traceEvents"] if e["ph"] == "X"]
    assert {e["args"]["device"] for e in slices} == set(range(K))


def test_schedule_shows_dualpipe_step_bubble_and_memory(capsys, tmp_path) -> None:  # noqa: ANN001
    """DualPipe (zoo.TWO_WAY) is timed by schedules.bidirectional: DeepSeek's step 3M + K - 2 and K + 1 held."""
    K, M, trace = 4, 8, tmp_path / "step.json"
    assert main(["schedule", "-K", str(K), "-M", str(M), "--schedule", "dualpipe", "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    assert f"step {3 * M + K - 2:g}, bubble {(K - 2) / (3 * M + K - 2):.3f}" in out
    for d in range(K):
        assert f"device {d} | busy {3 * M}, idle {K - 2}, peak held {K + 1}" in out
    slices = [e for e in json.loads(trace.read_text())["traceEvents"] if e["ph"] == "X"]
    assert {e["args"]["device"] for e in slices} == set(range(K))
    assert len(slices) == len(list(flatten(dualpipe_schedule(M, K))))  # one slice per action, F&B cells split
    assert main(["schedule", "-K", "3", "-M", "8", "--schedule", "dualpipe"]) == 2
    assert "even number of devices K (got K=3): use K=4" in capsys.readouterr().err
    assert main(["schedule", "-K", "4", "-M", "8", "--schedule", "dualpipe", "--latency", "1"]) == 2
    assert "drop --latency" in capsys.readouterr().err


def test_train_writes_the_last_step_as_a_perfetto_trace(capsys, tmp_path) -> None:  # noqa: ANN001
    trace = tmp_path / "step.json"
    assert main(["train", "-K", "2", "-M", "4", "--layers", "4", "--hidden-dim", "16", "--batch-size", "16",
                 "--steps", "1", "--quiet", "--schedule", "zb-h1", "--trace", str(trace)]) == 0
    assert f"trace of the last step written to {trace}" in capsys.readouterr().out
    slices = [e for e in json.loads(trace.read_text())["traceEvents"] if e["ph"] == "X"]
    assert {e["args"]["device"] for e in slices} == {0, 1} and {e["args"]["kind"] for e in slices} >= {"F", "I", "W"}


def test_schedule_refuses_costs_it_cannot_read(capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit):
        main(["schedule", "--costs", "1:2"])
    assert "expected F:I:W" in capsys.readouterr().err


def test_sweep_writes_a_plot(capsys, tmp_path) -> None:  # noqa: ANN001
    plot = tmp_path / "sweep.png"
    assert main(["sweep", "--micro-batches", "1,4", "--layers", "4", "--hidden-dim", "32", "--batch-size", "16",
                 "--repeats", "1", "--plot", str(plot)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if re.match(r"\s+[14]\s", line)]
    assert [int(r[0]) for r in rows] == [1, 4]
    assert float(rows[1][6]) == 0.2  # theory bubble for K=2, M=4
    assert plot.stat().st_size > 1000


def test_bad_input_exits_with_a_message(capsys) -> None:  # noqa: ANN001
    assert main(["train", "--partitions", "9", "--layers", "4", "--quiet"]) == 2
    assert "at most 4 partitions" in capsys.readouterr().err


def test_train_bn_with_deferred_batch_norm(capsys) -> None:  # noqa: ANN001
    assert main(["train", "--model", "bn", "--deferred-batch-norm", "-K", "2", "-M", "4", "--layers", "5",
                 "--hidden-dim", "16", "--batch-size", "32", "--steps", "3", "--quiet", "--dropout", "0"]) == 0
    out = capsys.readouterr().out
    assert "BatchNorm MLP of 5 layers" in out and "deferred BatchNorm" in out
    assert float(re.search(r"sequential model: (\S+)", out).group(1)) < 1e-4


def test_each_model_has_its_own_defaults() -> None:
    mlp = resolve_defaults(build_parser().parse_args(["train"]))
    gpt = resolve_defaults(build_parser().parse_args(["train", "--model", "gpt", "--layers", "2"]))
    assert (mlp.layers, mlp.hidden_dim, mlp.batch_size) == (16, 256, 256)
    assert (gpt.layers, gpt.hidden_dim, gpt.batch_size, gpt.context) == (2, 128, 32, 64)


def test_no_import_cycle_between_cli_and_the_distributed_launcher() -> None:
    code = ("import sys, gpipe_core.distributed.launch, gpipe_core.workloads.training, gpipe_core.course.report; "
            "assert 'gpipe_core.cli' not in sys.modules, 'the launcher imported the CLI'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_speed_lines_say_which_comparison_predicts_k_devices() -> None:
    from gpipe_core.course.report import Report

    cpu = Report(step_s=1.0, one_stage_s=1.5, plain_s=0.8, threads_per_stage=1, cores=2, load=0.5, bubble_theory=0.1)
    text = "\n".join(cpu.speed_lines(2, 8))
    assert "speedup 1.50x (ideal K*M/(M+K-1) = 1.78x)" in text and "speedup 0.80x" in text
    assert "(a) predicts a run on 2 GPUs" in text and "note:" not in text
    busy = Report(step_s=1.0, one_stage_s=1.0, plain_s=1.0, cores=2, load=6.0)
    assert "load average was 6.0 on 2 cores" in "\n".join(busy.speed_lines(2, 8))
    gpus = Report(step_s=1.0, one_stage_s=1.5, plain_s=1.6, cores=16, separate_devices=True)
    assert "(b) is the real gain" in "\n".join(gpus.speed_lines(4, 8))
    assert "ideal K*M" not in "\n".join(gpus.speed_lines(4, 8))  # no fill-drain formula for other schedules


def test_train_a_zero_bubble_schedule_with_virtual_stages(capsys) -> None:  # noqa: ANN001
    assert main(["train", "-K", "2", "-M", "4", "--schedule", "zbv", "--layers", "8", "--hidden-dim", "16",
                 "--batch-size", "16", "--steps", "2", "--quiet", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "schedule=zbv" in out and "theory" not in out
    assert len(re.findall(r"device \d: +\d+\.\d+ MiB measured\n", out)) == 2  # 2 stages on each, no law
    assert float(re.search(r"sequential model: (\S+)", out).group(1)) < 1e-5

"""The gpipe command: train reports measured numbers, schedule prints the table, sweep plots."""

from __future__ import annotations

import re

from gpipe_core.cli import main


def test_train_reports_and_the_loss_falls(capsys, tmp_path) -> None:  # noqa: ANN001
    gantt = tmp_path / "g.png"
    assert main(["train", "--partitions", "2", "--micro-batches", "4", "--layers", "6", "--hidden-dim", "32",
                 "--batch-size", "64", "--steps", "8", "--lr", "3e-3", "--quiet", "--gantt", str(gantt)]) == 0
    out = capsys.readouterr().out
    losses = [float(v) for v in re.search(r"loss per step: (.*)", out).group(1).split()]
    assert len(losses) == 8 and losses[-1] < 0.8 * losses[0]
    assert re.search(r"speedup \d+\.\d+x", out)
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

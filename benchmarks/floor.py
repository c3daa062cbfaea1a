"""The threaded runtime at K=2 against its own floor, in the same run: the target two threads can decide.

Two worker threads cost something even when they never overlap: with every
wake-up held until its sender is about to wait (:func:`every_wake_held`), the
two workers take turns and almost never hand off, and what the runtime still
spends outside the stages' calls is the least a two-thread design pays on
these empty stages. An absolute budget in microseconds says more about the
machine than about the engine; this row divides the runtime's own CPU with the
mailbox as shipped by that floor, one step of each in every round (the order
alternating), so a busy moment hits both alike. The stage-call wrappers' own
cost is taken out of both sides.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch
from torch import nn

from gpipe_core import GPipe

from .common import Row
from .runtime_overhead import Scale, every_wake_held
from .stage_clock import StageClock, instrument_floor, stages_of


def run(M: int = 256, repeats: int = 15) -> list[Row]:
    x, y = torch.randn(M, 1), torch.randn(M, 1)
    model = nn.Sequential(Scale(), Scale())
    wrapper = instrument_floor()
    actions = 2 * M * 2  # F and B per micro-batch per stage
    own: dict[str, list[float]] = {"shipped": [], "held": []}
    with GPipe(model, partitions=2, chunks=M, checkpoint="never", threads_per_stage=1, executor="threads") as pipe:
        clock = StageClock(stages_of(pipe))

        def step() -> None:
            pipe.step(x, y, nn.functional.mse_loss, seed=0)

        for r in range(repeats):
            for name in (("shipped", "held") if r % 2 == 0 else ("held", "shipped")):
                with every_wake_held() if name == "held" else nullcontext():
                    step()  # the mailbox's estimates come from the step before: one under the same setting
                    clock.install()
                    cpu = time.process_time()
                    step()
                    cpu = time.process_time() - cpu
                    clock.remove()
                inside, _ = clock.take()
                own[name].append(max(1e-9, cpu - inside - wrapper * actions))
    model.zero_grad(set_to_none=True)
    per = {k: sorted(v)[len(v) // 2] / (M * 2) * 1e6 for k, v in own.items()}
    return [Row.estimate("4 runtime", f"runtime's own CPU, threads, K=2, M={M}: as shipped / every wake-up held",
                         [a / b for a, b in zip(own["shipped"], own["held"])], target="<= 1.15",
                         detail=f"{per['shipped']:.1f} us against {per['held']:.1f} us per micro-batch per stage "
                                f"(stage-call wrappers' {wrapper * 2e6:.1f} us taken out); median of {repeats} "
                                "rounds' ratios, spread = 95% interval of that median")]

"""Metric 4: the runtime's own cost per micro-batch and stage, measured directly.

Stages of one scalar multiply do (almost) no arithmetic, so what is left of a
step is bookkeeping. A plain loop's time subtracted from the engine's would
estimate it, but that difference of two noisy timings goes below zero when
the true cost is a few microseconds. So this benchmark measures the runtime's
work itself, in CPU time, within one step:

    own = CPU time of the whole process during ``pipe.step``
          - CPU time each thread spent inside the stages' own calls

Every call the runtime makes into a stage (forward, backward, the split
backward's halves) is wrapped to read its thread's CPU clock before and after.
Those intervals are disjoint parts of the process's CPU time, so ``own`` is
never negative: it is starting and joining workers, passing messages, waking
threads, walking the table, splitting the batch and gathering losses. What a
stage does inside its call (policies, RNG, the loss) is metric 1's. The
wrappers' own cost falls into ``own``; the rows report it (an empty call).

CPU time sees work, not waiting: a thread asleep until the GIL or a message
comes costs nothing here, and waking it lands in whichever call it was in. So
each row also counts the hand-offs (voluntary context switches) per
micro-batch per stage, and a second row per configuration gives the wall
clock: the step over the same calls in a plain loop, from paired repeats.
"""

from __future__ import annotations

import queue
import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
from torch import nn

from gpipe_core import GPipe
from gpipe_core.engine import mailbox

from .common import Row, interleaved, paired
from .stage_clock import STAGE_CALLS, StageClock, instrument_floor, stages_of


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w



def _plain_loop(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, M: int) -> None:
    """The same calls the engine makes, with no engine: per micro-batch, per stage."""
    for xi, yi in zip(torch.tensor_split(x, M), torch.tensor_split(y, M)):
        outs, h = [], xi
        for layer in model:
            h0 = h.detach().requires_grad_(bool(outs))
            h = layer(h0)
            outs.append((h0, h))
        loss = nn.functional.mse_loss(h, yi) / M
        grad = None
        for h0, h in reversed(outs):
            torch.autograd.backward(loss if grad is None else h, grad)
            grad = h0.grad
            loss = None


def measure(pipe: GPipe, plain: Callable[[], None], step: Callable[[], None], repeats: int,
            actions: int) -> dict[str, list[float]]:
    """Per repeat: the runtime's own CPU seconds and context switches, and wall seconds of engine and loop.

    Each repeat runs one instrumented step (CPU side), then the bare engine and
    the plain loop back to back in alternating order (ABBA), so a drift in the
    machine's load hits both alike and the wrappers never touch the wall times.
    ``actions`` is how many stage calls one step makes; another count means a
    stage method escaped the wrappers.
    """
    clock = StageClock(stages_of(pipe))
    step()
    plain()  # warm-up
    out: dict[str, list[float]] = {"own": [], "switches": [], "engine": [], "plain": []}
    for r in range(repeats):
        clock.install()
        switches = _voluntary_switches()
        cpu = time.process_time()
        step()
        cpu = time.process_time() - cpu
        out["switches"].append(_voluntary_switches() - switches)
        clock.remove()
        inside, calls = clock.take()
        if calls != actions:
            raise RuntimeError(f"{calls} stage calls were timed but the table has {actions} actions: the "
                               f"runtime calls a stage method not in STAGE_CALLS {STAGE_CALLS}; add it there")
        out["own"].append(max(0.0, cpu - inside))  # >= 0 already; max() only absorbs clock rounding
        for name in (("engine", "plain") if r % 2 == 0 else ("plain", "engine")):
            start = time.perf_counter()
            step() if name == "engine" else plain()
            out[name].append(time.perf_counter() - start)
    return out


def _voluntary_switches() -> int:
    """Times any thread of this process blocked (waiting for the GIL, a message, a join): hand-offs, counted."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw


def run(Ks: tuple[int, ...] = (1, 2, 4), M: int = 256, repeats: int = 15) -> list[Row]:
    floor_us = instrument_floor() * 2 * 1e6  # two stage calls (F and B) per micro-batch per stage
    # threads at K=2 is held to its own floor (benchmarks/floor.py) rather than to a budget in microseconds
    targets = {("inline", K): "<= 10" for K in Ks} | {("threads", 4): "<= 30"}
    rows = [row for executor in ("inline", "threads") for K in Ks
            for row in configuration(executor, K, M, repeats, targets.get((executor, K), ""), floor_us)]
    if 2 in Ks:  # the mailbox's part in the threaded figure: K=2 again with a wake-up per message, then with none
        for setting, note in ((every_wake_at_once, "every wake-up at once"),
                              (every_wake_held, "every wake-up held (stages take turns)")):
            with setting():
                rows += configuration("threads", 2, M, repeats, "", floor_us, note=f", {note}")
    return rows + against_hand_written(M, repeats)


def configuration(executor: str, K: int, M: int, repeats: int, target: str, floor_us: float,
                  note: str = "") -> list[Row]:
    """Two rows for K empty stages under ``executor``: the runtime's own CPU, and wall time against a plain loop."""
    x, y = torch.randn(M, 1), torch.randn(M, 1)
    model = nn.Sequential(*[Scale() for _ in range(K)])
    with GPipe(model, partitions=K, chunks=M, checkpoint="never", threads_per_stage=1, executor=executor) as pipe:
        t = measure(pipe, lambda: _plain_loop(model, x, y, M), lambda: pipe.step(x, y, nn.functional.mse_loss, seed=0),
                    repeats, 2 * M * K)
    switches = sorted(t["switches"])[repeats // 2] / (M * K)
    where = f"{executor}, K={K}, M={M}{note}"
    return [Row.estimate("4 runtime", f"runtime's own CPU work per micro-batch per stage, {where}",
                         [s / (M * K) * 1e6 for s in t["own"]], unit="us", target=target,
                         detail=f"median of {repeats} steps, spread = 95% interval of the median; {switches:.2f} "
                                f"thread hand-offs (voluntary context switches) per micro-batch per stage; the "
                                f"stage-call wrappers add about {floor_us:.1f} us"),
            Row.estimate("4 runtime", f"wall time: step / the same calls in a plain loop, {where}",
                         [e / p for e, p in zip(t["engine"], t["plain"])],
                         detail=f"engine {_ms(t['engine'])}, plain loop {_ms(t['plain'])}: medians of {repeats} "
                                "paired repeats; the row is the median of the pairs' ratios")]


@contextmanager
def _mailbox(short: float, budget: float) -> Iterator[None]:
    """Pipes stepped inside build their outboxes with these settings; outside, the shipped ones hold again."""
    shipped = mailbox.SHORT_ACTION, mailbox.HOLD_BUDGET
    mailbox.SHORT_ACTION, mailbox.HOLD_BUDGET = short, budget
    try:
        yield
    finally:
        mailbox.SHORT_ACTION, mailbox.HOLD_BUDGET = shipped


def every_wake_at_once() -> AbstractContextManager[None]:
    """A wake-up for every message, as before the mailbox held wake-ups back: the most hand-offs."""
    return _mailbox(short=0.0, budget=mailbox.HOLD_BUDGET)


def every_wake_held() -> AbstractContextManager[None]:
    """A wake-up only when a sender is about to wait or has finished: the two workers never run at once.

    No overlap and (almost) no hand-offs: what two worker threads cost with
    nothing of the hand-offs left, the floor under the threaded row at this K.
    """
    return _mailbox(short=float("inf"), budget=float("inf"))


def _two_thread_loop(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, M: int) -> None:
    """The plain loop's calls for two stages on two threads, hand-written: the least any threaded design does.

    Stage 0's thread runs every forward, then each backward as its gradient
    arrives; stage 1's thread runs forward and loss as each activation arrives,
    then the backwards in reverse. One queue each way, no table, no
    bookkeeping: what is left over the one-thread loop is the hand-offs.
    """
    first, second = model
    down: queue.SimpleQueue = queue.SimpleQueue()
    up: queue.SimpleQueue = queue.SimpleQueue()

    def stage0() -> None:
        torch.set_num_threads(1)  # per thread, as the engine's workers do (OpenMP's setting is per thread)
        outs = []
        for xi in torch.tensor_split(x, M):
            h = first(xi.detach())
            outs.append(h)
            down.put(h.detach())
        for _ in range(M):
            i, grad = up.get()
            torch.autograd.backward(outs[i], grad)

    def stage1() -> None:
        torch.set_num_threads(1)
        held = []
        for yi in torch.tensor_split(y, M):
            h0 = down.get().requires_grad_(True)
            held.append((h0, nn.functional.mse_loss(second(h0), yi) / M))
        for i in reversed(range(M)):
            h0, loss = held[i]
            loss.backward()
            up.put((i, h0.grad))

    threads = [threading.Thread(target=f) for f in (stage1, stage0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def against_hand_written(M: int = 256, repeats: int = 15) -> list[Row]:
    """Threads on these empty stages, K=2, in total CPU: the engine against a two-thread loop written by hand.

    The rows above count only the runtime's work outside stage calls; what
    threads cost inside them (waking the other thread, passing the GIL, which
    every torch call releases and takes back) falls outside. Here each
    candidate's whole process CPU time is divided by the plain loop's (the same
    calls on one thread), pair by pair: the hand-written loop
    (:func:`_two_thread_loop`) is what the simplest threaded design pays, the
    engine's threaded executor sits beside it. Reported rows: the targets
    above stay on the runtime's own work.
    """
    model = nn.Sequential(Scale(), Scale())
    x, y = torch.randn(M, 1), torch.randn(M, 1)
    pipe = GPipe(model, partitions=2, chunks=M, checkpoint="never", threads_per_stage=1, executor="threads")
    fns = {"plain loop": lambda: _plain_loop(model, x, y, M), "hand-written": lambda: _two_thread_loop(model, x, y, M),
           "engine, threads": lambda: pipe.step(x, y, nn.functional.mse_loss, seed=0)}
    t = interleaved(fns, repeats, clock=time.process_time)
    model.zero_grad(set_to_none=True)
    return [Row.estimate("4 runtime", f"total CPU / the plain loop's: {name}, K=2, M={M}",
                         paired(t[name], t["plain loop"]),
                         detail=f"{t[name].median * 1e3:.1f} ms against {t['plain loop'].median * 1e3:.1f} ms of CPU "
                                "(all threads); median of back-to-back pairs")
            for name in ("hand-written", "engine, threads")]


def _ms(values: list[float]) -> str:
    return f"{sorted(values)[len(values) // 2] * 1e3:.1f} ms"

"""Bad input gets an error that names the fix; a failing stage never hangs the caller."""

from __future__ import annotations

import _thread
import signal
import threading

import pytest
import torch
from helpers.engine import batch, small_model
from helpers.fakes import Hold, StoppedClock
from torch import nn

from gpipe_core import GPipe, StageError
from gpipe_core.engine import runtime as runtime_module

CE = nn.functional.cross_entropy


def test_k_larger_than_layers() -> None:
    with pytest.raises(ValueError, match=r"K=9 stages is more than the 6 layers.*at most 6"):
        GPipe(small_model(), partitions=9)


def test_m_larger_than_batch() -> None:
    pipe = GPipe(small_model(), partitions=2, chunks=16)
    with pytest.raises(ValueError, match=r"M=16 micro-batches cannot split a batch of 10.*chunks <= 10"):
        pipe.step(*batch(n=10), CE)


def test_balance_not_summing_to_layers() -> None:
    with pytest.raises(ValueError, match=r"sums to 4 but the model has 6 layers.*add up to 6"):
        GPipe(small_model(), balance=[2, 2])


@pytest.mark.parametrize(("devices", "message"), [
    (["cpu", "tpu:0"], r"unknown device 'tpu:0'|unsupported device 'tpu:0'"),
    (["cuda:7", "cpu"], r"cuda:7.*(CUDA is not available|does not exist)"),
    (["cpu", "cpu", "cpu"], r"got 3 devices for 2 stages"),
    (["banana"], r"unknown device 'banana'.*'cpu'"),
])
def test_unknown_device(devices: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GPipe(small_model(), partitions=2, devices=devices)


def test_module_not_sequential() -> None:
    with pytest.raises(TypeError, match=r"needs an nn.Sequential, got Linear.*nn.Sequential\(\*layers\)"):
        GPipe(nn.Linear(3, 3), partitions=1)  # type: ignore[arg-type]


def test_unknown_checkpoint_and_schedule() -> None:
    with pytest.raises(ValueError, match=r"unknown checkpoint 'sometimes'"):
        GPipe(small_model(), checkpoint="sometimes")
    with pytest.raises(ValueError, match=r"unknown schedule 'fast'"):
        GPipe(small_model(), schedule="fast")


class Explodes(nn.Module):
    def __init__(self, microbatch_size: int | None = None, backward: bool = False) -> None:
        super().__init__()
        self.size, self.in_backward = microbatch_size, backward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is None or x.shape[0] == self.size:
            if not self.in_backward:
                raise RuntimeError("boom")
            return _FailBackward.apply(x)
        return x


class _FailBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        return x.clone()

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        raise RuntimeError("backward boom")


def _model_with(layer: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Linear(12, 12), nn.Linear(12, 12), layer, nn.Linear(12, 4))


def test_exception_in_a_stage_reaches_the_caller_naming_it() -> None:
    pipe = GPipe(_model_with(Explodes(microbatch_size=2)), balance=[1, 2, 1], chunks=4)
    with pytest.raises(StageError, match=r"stage 1 failed in the forward of micro-batch \d: RuntimeError: boom"):
        pipe.step(*batch(n=9), CE)  # 9 -> 3, 2, 2, 2: micro-batch 1 is the first of size 2


def test_exception_in_backward_reaches_the_caller() -> None:
    pipe = GPipe(_model_with(Explodes(backward=True)), balance=[2, 1, 1], chunks=3, checkpoint="never")
    with pytest.raises(StageError, match=r"stage 1 failed in the backward of micro-batch 2: .*backward boom"):
        pipe.step(*batch(n=9), CE)


def test_next_step_works_after_a_failure() -> None:
    layer = Explodes()
    pipe = GPipe(_model_with(layer), balance=[1, 2, 1], chunks=3)
    with pytest.raises(StageError):
        pipe.step(*batch(), CE)
    layer.size = -1  # stop exploding
    loss = pipe.step(*batch(), CE)
    assert torch.isfinite(loss)
    assert not any(t.name.startswith("gpipe-") for t in threading.enumerate())


def test_nan_loss_stops_the_step() -> None:
    pipe = GPipe(small_model(), partitions=2, chunks=2)
    x, y = batch()
    x[7] = float("nan")
    with pytest.raises(StageError, match=r"micro-batch 1.*FloatingPointError: the loss is nan"):
        pipe.step(x, y, CE)
    assert torch.isfinite(pipe.step(*batch(), CE))


class Holds(nn.Module):
    """A layer whose forward blocks on a ``Hold`` (helpers.fakes) while ``held``: a stage that never returns."""

    def __init__(self, hold: Hold) -> None:
        super().__init__()
        self.hold, self.held, self.calls = hold, True, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.held:
            self.hold()
        return x


def test_timeout_names_the_stuck_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline passes once stage 1's first forward has begun (a stopped clock), whatever the machine's load."""
    clock, hold = StoppedClock(), Hold()
    monkeypatch.setattr(runtime_module, "time", clock)
    pipe = GPipe(_model_with(Holds(hold)), balance=[1, 2, 1], chunks=2, timeout=0.3)
    hold.once_entered(pipe._runtime, clock.expire)  # noqa: SLF001 - the runtime that is stopped
    with pytest.raises(TimeoutError, match=r"timeout=0.3s.*stage 1 in F0@stage1"):
        pipe.step(*batch(), CE)


def test_keyboard_interrupt_stops_the_step_and_the_next_works() -> None:
    """Ctrl-C during a step stops it at the next action and leaves no worker behind.

    The interrupt is sent once the held layer has started (an event, not a
    timer), and the layer returns only after the runtime has stopped its
    workers, so no second action may begin. The test installs Python's own
    SIGINT handler for its duration: a library earlier in the same process may
    have left another handler there (asyncio's add_signal_handler installs a
    no-op one), and then ``_thread.interrupt_main`` raises nothing.
    """
    hold = Hold()
    held = Holds(hold)
    pipe = GPipe(_model_with(held), balance=[1, 2, 1], chunks=4)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        hold.once_entered(pipe._runtime, _thread.interrupt_main)  # noqa: SLF001 - the runtime that is stopped
        with pytest.raises(KeyboardInterrupt):
            pipe.step(*batch(), CE)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert held.calls == 1, f"{held.calls} forwards of the held layer ran: the step went on after Ctrl-C"
    assert not any(t.name.startswith("gpipe-") for t in threading.enumerate())
    held.held = False
    assert torch.isfinite(pipe.step(*batch(), CE))


def test_inline_executor_names_the_failing_stage_and_recovers() -> None:
    layer = Explodes(microbatch_size=2)
    pipe = GPipe(_model_with(layer), balance=[1, 2, 1], chunks=4, executor="inline")
    with pytest.raises(StageError, match=r"stage 1 failed in the forward of micro-batch 1: RuntimeError: boom"):
        pipe.step(*batch(n=9), CE)
    layer.size = -1
    assert torch.isfinite(pipe.step(*batch(n=9), CE))
    with pytest.raises(ValueError, match=r"unknown executor 'processes'"):
        GPipe(small_model(), executor="processes")

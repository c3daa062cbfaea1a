"""A stage as torch.distributed.pipelining runs it, with the engine's seeding, recompute and trace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.pipelining import PipelineStage
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from ..engine.common import StageError
from ..engine.rng import stage_seed
from ..engine.trace import Event
from ..schedules.schedule import Action


class StageModule(nn.Module):
    """A stage's layers as torch's ``PipelineStage`` calls them, with the engine's seeding and recompute rules.

    ``microbatch`` is set by :class:`TracedStage` around every real forward;
    it is None during torch's one shape-inference forward, which runs plain.
    """

    def __init__(self, layers: nn.Sequential, index: int, checkpoint: str, device: torch.device,
                 clock: Callable[[], float]) -> None:
        super().__init__()
        self.layers = layers
        self.index, self.checkpoint, self.device, self.clock = index, checkpoint, device, clock
        self.microbatch: int | None = None
        self.chunks, self.base_seed = 1, 0
        self.recompute_end: float | None = None
        self.recomputes: list[tuple[int, float, float]] = []
        self._calls: dict[int, int] = {}

    def begin_step(self, chunks: int, base_seed: int) -> None:
        self.chunks, self.base_seed = chunks, base_seed
        self.recomputes.clear()
        self._calls.clear()

    def _recomputes(self, i: int) -> bool:
        return self.checkpoint == "always" or (self.checkpoint == "except_last" and i != self.chunks - 1)

    def forward(self, x: Tensor) -> Tensor:
        i = self.microbatch
        if i is None:
            return self.layers(x)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            torch.manual_seed(stage_seed(self.base_seed, i, self.index))
            if torch.is_grad_enabled() and self._recomputes(i):
                # checkpoint stashes the RNG state it finds (just seeded) and restores it to recompute
                return torch_checkpoint(self._run, x, i, use_reentrant=False)
            return self.layers(x)

    def _run(self, x: Tensor, i: int) -> Tensor:
        self._calls[i] = self._calls.get(i, 0) + 1
        if self._calls[i] == 1:
            return self.layers(x)
        start = self.clock()  # the second call is the recomputation inside backward
        try:
            return self.layers(x)
        finally:  # torch stops a recomputation early (by raising) once it has every tensor backward needs
            self.recompute_end = self.clock()
            self.recomputes.append((i, start, self.recompute_end))


class TracedStage(PipelineStage):
    """``PipelineStage`` that times every forward and backward and names the failing action."""

    def __init__(self, module: StageModule, index: int, K: int, device: torch.device,
                 group: dist.ProcessGroup | None) -> None:
        super().__init__(module, index, K, device, group=group)
        self.wrapped = module
        self.events: list[Event] = []

    def forward_one_chunk(self, fwd_chunk_id: int, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None,
                          save_forward_output: bool = True) -> Any:
        self.wrapped.microbatch = fwd_chunk_id
        start = self.wrapped.clock()
        try:
            out = super().forward_one_chunk(fwd_chunk_id, args, kwargs, save_forward_output)
        except Exception as exc:
            raise stage_error(self.stage_index, Action("F", fwd_chunk_id, self.stage_index), exc) from exc
        finally:
            self.wrapped.microbatch = None
        self.events.append(Event(self.stage_index, fwd_chunk_id, "F", start, self.wrapped.clock()))
        return out

    def backward_one_chunk(self, bwd_chunk_id: int, loss: Any = None, full_backward: bool = True,
                           last_backward: bool = False) -> None:
        self.wrapped.recompute_end = None
        start = self.wrapped.clock()
        try:
            super().backward_one_chunk(bwd_chunk_id, loss=loss, full_backward=full_backward,
                                       last_backward=last_backward)
        except Exception as exc:
            raise stage_error(self.stage_index, Action("B", bwd_chunk_id, self.stage_index), exc) from exc
        b_start = self.wrapped.recompute_end if self.wrapped.recompute_end is not None else start
        self.events.append(Event(self.stage_index, bwd_chunk_id, "B", b_start, self.wrapped.clock()))


def stage_error(stage: int, action: Action, exc: Exception) -> StageError:
    # torch wraps a forward's exception in a RuntimeError listing the arguments; name the original
    cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
    return StageError(stage, action, cause)

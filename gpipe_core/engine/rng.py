"""Per-stage random streams, so dropout is reproducible on parallel workers.

PyTorch's dropout draws from one global generator per device. Stages that run
on parallel threads would race for it, and the masks (and so the gradients)
would change from run to run. Here every (micro-batch, stage) pair gets its own
stream, seeded from the step's base seed: the masks no longer depend on thread
timing or on the schedule, recomputation can replay them exactly, and a
sequential reference can reproduce them with ``torch.manual_seed``.

Only the dropout layers themselves swap the stage's stream into the global
generator, under a lock; the rest of the stage runs in parallel.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

_LOCK = threading.RLock()
_ACTIVE = threading.local()
_MASK = (1 << 63) - 1


def stage_seed(base_seed: int, microbatch: int, stage: int) -> int:
    """The seed of micro-batch ``microbatch`` on stage ``stage`` in a step seeded ``base_seed``."""
    x = (base_seed * 0x9E3779B97F4A7C15 + microbatch * 0xBF58476D1CE4E5B9 + stage * 0x94D049BB133111EB)
    x &= _MASK
    x ^= x >> 31
    return (x * 0xD6E8FEB86659FD93) & _MASK


def draw_base_seed() -> int:
    """A step's base seed, drawn from PyTorch's global generator (so ``torch.manual_seed`` fixes it)."""
    return int(torch.randint(0, 2**62, (1,)).item())


def _default_generator(device: torch.device) -> torch.Generator:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.default_generators[index]
    return torch.default_generator


class _NoRandom:
    """The stream of a stage without random layers: nothing to seed, save or replay."""

    has_random_layers = False

    def get_state(self) -> None:
        return None

    def set_state(self, state: object) -> None:
        pass

    def active(self) -> nullcontext[None]:
        return nullcontext()


NO_RANDOM = _NoRandom()


class StageRandom:
    """The private generator of one stage and the hooks that make its dropout use it."""

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self._saved: list[torch.Tensor] = []
        self._handles = []
        for layer in module.modules():
            if isinstance(layer, _DropoutNd):
                self._handles.append(layer.register_forward_pre_hook(self._enter))
                self._handles.append(layer.register_forward_hook(self._leave, always_call=True))

    @property
    def has_random_layers(self) -> bool:
        return bool(self._handles)

    def seed(self, base_seed: int, microbatch: int, stage: int) -> None:
        self.generator.manual_seed(stage_seed(base_seed, microbatch, stage))

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Within this block, on this thread, the stage's dropout layers draw from its stream."""
        previous = getattr(_ACTIVE, "rng", None)
        _ACTIVE.rng = self
        try:
            yield
        finally:
            _ACTIVE.rng = previous

    def _enter(self, module: nn.Module, args: object) -> None:
        if getattr(_ACTIVE, "rng", None) is not self:
            return
        _LOCK.acquire()
        default = _default_generator(self.device)
        self._saved.append(default.get_state())
        default.set_state(self.generator.get_state())

    def _leave(self, module: nn.Module, args: object, output: object) -> None:
        if getattr(_ACTIVE, "rng", None) is not self:
            return
        default = _default_generator(self.device)
        self.generator.set_state(default.get_state())
        default.set_state(self._saved.pop())
        _LOCK.release()

    def remove(self) -> None:
        """Detach the hooks from the layers (the pipe is being discarded)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

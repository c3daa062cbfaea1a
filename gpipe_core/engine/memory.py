"""Count the activation bytes a stage really holds.

The memory law in :mod:`gpipe_core.sim.theory` is only worth teaching if it can be
checked. On CPU we count exactly: every tensor autograd saves for backward
passes through a saved-tensor hook, and every stage input kept for
recomputation is registered by the stage. Parameters are not activations and
are left out; a tensor saved twice (same address and size) counts once, and
a slice counts its own bytes, not its whole storage's. On CUDA the allocator's peak is
the honest number, so :func:`cuda_peak_bytes` reads it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor


def _key(t: Tensor) -> tuple[str, int, int]:
    """Same memory, same key: a tensor saved twice (or a detached alias) counts once."""
    return (str(t.device), t.data_ptr(), t.numel() * t.element_size())


class MemoryMeter:
    """Live and peak activation bytes of one stage, deduplicated by storage."""

    def __init__(self, exclude: list[Tensor] | tuple[Tensor, ...] = ()) -> None:
        self._exclude = {_key(p) for p in exclude}
        self._refs: dict[tuple[str, int, int], list[int]] = {}
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0

    def hold(self, t: Tensor) -> object:
        """Count ``t`` as held until the returned token is dropped."""
        key = _key(t)
        nbytes = key[2]
        if key in self._exclude or nbytes == 0:
            return None
        with self._lock:
            entry = self._refs.setdefault(key, [0, nbytes])
            if entry[0] == 0:
                self.current += nbytes
                self.peak = max(self.peak, self.current)
            entry[0] += 1
        return _Token(self, key)

    def _release(self, key: tuple[str, int, int]) -> None:
        with self._lock:
            entry = self._refs[key]
            entry[0] -= 1
            if entry[0] == 0:
                self.current -= entry[1]
                del self._refs[key]

    @contextmanager
    def saving(self) -> Iterator[None]:
        """Within this block (this thread), count every tensor autograd saves."""

        def pack(t: Tensor) -> tuple[Tensor, object]:
            # detached: a saved *output* kept as itself would point back at its own grad_fn, a cycle that
            # keeps the graph (and the count) alive when a split backward retains the graph for W
            return t.detach(), self.hold(t)

        def unpack(packed: tuple[Tensor, object]) -> Tensor:
            return packed[0]

        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield


class _Token:
    __slots__ = ("meter", "key")

    def __init__(self, meter: MemoryMeter, key: tuple[str, int, int]) -> None:
        self.meter, self.key = meter, key

    def __del__(self) -> None:
        self.meter._release(self.key)


def cuda_peak_bytes(device: torch.device | str) -> int:
    """Peak bytes the CUDA caching allocator handed out on ``device`` since the last reset."""
    return torch.cuda.max_memory_allocated(torch.device(device))

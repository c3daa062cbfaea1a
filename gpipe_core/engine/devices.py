"""Which device each stage runs on.

With K CUDA devices stage j runs on ``cuda:j``; with fewer GPUs (Colab has one)
stages share them round-robin, each stage on its own CUDA stream; with no GPU
every stage is a CPU worker. Explicit device lists are checked here so a typo
fails at construction with the fix in the message, not deep inside a step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

DeviceLike = str | int | torch.device


def parse_device(spec: DeviceLike) -> torch.device:
    """One device spec, checked against what this machine has."""
    if isinstance(spec, int):
        spec = f"cuda:{spec}"
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {spec!r}: use 'cpu', 'cuda' or 'cuda:N' (or devices=None to choose automatically)"
        ) from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise ValueError(f"unsupported device {spec!r}: gpipe_core runs stages on 'cpu' or 'cuda:N'")
    count = torch.cuda.device_count()
    if count == 0:
        raise ValueError(f"device {spec!r} asked for, but CUDA is not available here: use 'cpu' or devices=None")
    index = 0 if device.index is None else device.index
    if index >= count:
        raise ValueError(
            f"device {spec!r} does not exist: this machine has {count} CUDA device(s), "
            f"cuda:0..cuda:{count - 1}; pass existing devices or devices=None"
        )
    return torch.device("cuda", index)


def resolve_devices(devices: Sequence[DeviceLike] | DeviceLike | None, K: int) -> list[torch.device]:
    """K devices, one per stage, from ``devices`` (None: CUDA round-robin if present, else CPU)."""
    if devices is None:
        count = torch.cuda.device_count()
        if count:
            return [torch.device("cuda", j % count) for j in range(K)]
        return [torch.device("cpu")] * K
    if isinstance(devices, (str, int, torch.device)):
        return [parse_device(devices)] * K
    parsed = [parse_device(d) for d in devices]
    if len(parsed) == 1:
        return parsed * K
    if len(parsed) != K:
        raise ValueError(
            f"got {len(parsed)} devices for {K} stages: pass one device per stage, one device for all, "
            "or devices=None"
        )
    return parsed

"""A layer whose buffers change in a forward in ways that add up: what DualPipe's two directions can merge exactly."""

from __future__ import annotations

import torch
from torch import nn


class Counter(nn.Module):
    """A linear layer whose buffers count its calls and add up its inputs: state that does not depend on order."""

    def __init__(self, width: int = 12) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("seen", torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.seen += x.detach().sum(0)
        return torch.tanh(self.fc(x))

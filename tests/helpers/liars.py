"""Values that lie about themselves, as learner code returns them to fool a comparison, for the judge's tests.

The judge must read true values (``int(x)``, exact tensor bytes), never trust
``==`` on what a learner's function returned: these are the liars it meets.
"""

from __future__ import annotations

import torch


class EqualsEverything(int):
    """An int that compares equal to anything."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


class SneakyTensor(torch.Tensor):
    """A tensor subclass: it could override any method the judge calls."""

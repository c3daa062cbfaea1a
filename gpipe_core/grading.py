"""Make grading measure the learner's own work.

gpipe_core is open and contains real versions of everything learners build:
the partitioner, the schedules, the recomputation policy, the micro-batch
helpers. While a learner's function runs under :func:`learner_only`, those
reference implementations raise :class:`ReferenceDisabled` instead, so a
submission that just calls them fails that test with a message saying why.

The swap is done on the functions' code objects (and the policy classes'
methods), so ``from gpipe_core import balance_by_cost`` made earlier, an alias,
or a module attribute all hit the same guard. The engine's runtime itself stays
usable: hidden tests may run a learner's schedule on real workers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FunctionType
from typing import Any

import torch.utils.checkpoint

from . import checkpoint, microbatch, partition, reference, schedule

_LOCK = threading.Lock()

# What each assignment's learners build; the guard covers all of them by default.
GUARDED: dict[str, list[tuple[Any, str]]] = {
    "microbatch": [(microbatch, "split"), (microbatch, "weights"), (microbatch, "join"),
                   (reference, "sequential_step")],
    "partition": [(partition, "balance_by_count"), (partition, "balance_by_cost"), (partition, "profile_layers"),
                  (partition, "balance_by_size"), (partition, "balance_by_time")],
    "schedule": [(schedule, "gpipe_schedule"), (schedule, "one_f_one_b_schedule"),
                 (schedule, "ticks_from_orders")],
    "recompute": [(checkpoint.Recompute, "forward"), (checkpoint.Recompute, "backward"),
                  (torch.utils.checkpoint, "checkpoint")],
}


class ReferenceDisabled(RuntimeError):
    """Raised when graded code calls the reference implementation it was asked to write."""


_LABELS: dict[Any, str] = {}


def _blocked(*args: Any, **kwargs: Any) -> Any:
    """Stand-in body: it runs with the guarded function's globals, so it imports what it needs."""
    import sys

    from gpipe_core.grading import _refuse

    _refuse(sys._getframe().f_code)


def _refuse(code: Any) -> None:
    raise ReferenceDisabled(
        f"gpipe_core's own {_LABELS.get(code, 'implementation')} is disabled while your work is graded: "
        "write this part yourself (your notebook's exercise) instead of calling the reference"
    )


@contextmanager
def learner_only(*parts: str) -> Iterator[None]:
    """Within this block, the reference versions of ``parts`` (default: all) raise ReferenceDisabled."""
    names = parts or tuple(GUARDED)
    unknown = [p for p in names if p not in GUARDED]
    if unknown:
        raise ValueError(f"unknown parts {unknown}: choose from {sorted(GUARDED)}")
    swapped: list[tuple[Any, str, Any]] = []  # (function or owner, attribute, original)
    with _LOCK:
        for part in names:
            for owner, attr in GUARDED[part]:
                label = f"{getattr(owner, '__name__', owner)}.{attr}"
                fn = getattr(owner, attr)
                fn = getattr(fn, "__func__", fn)
                code = _blocked.__code__.replace(co_name=fn.__code__.co_name, co_qualname=label)
                _LABELS[code] = label
                if fn.__code__.co_freevars:  # a decorated function: replace the attribute instead
                    swapped.append((owner, attr, getattr(owner, attr)))
                    setattr(owner, attr, FunctionType(code, _blocked.__globals__, attr))
                else:  # swap the code itself, so every alias of the function is guarded
                    swapped.append((fn, "__code__", fn.__code__))
                    fn.__code__ = code
    try:
        yield
    finally:
        with _LOCK:
            for target, attr, original in reversed(swapped):
                setattr(target, attr, original)
            _LABELS.clear()


def run_learner(fn: Callable[..., Any], *args: Any, parts: tuple[str, ...] = (), **kwargs: Any) -> Any:
    """Call a learner's ``fn`` with the reference implementations disabled."""
    with learner_only(*parts):
        return fn(*args, **kwargs)

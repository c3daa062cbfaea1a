"""Attacks on the grading view, written as learner code: tests/test_grading_view.py appends this file to a probe module.

The probe calls these functions on an assignment's view exactly as it calls a
learner's, so they reach what a hostile notebook would reach. Each returns
plain data: the value a function gave, "blocked" for the view's
NotImplementedError, or "raised <type>" (with " (blocked)" when the view's
error is inside, e.g. a StageError around it).
"""

import importlib
import inspect
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except NotImplementedError as exc:
        return "blocked" if str(exc).startswith("graded:") else "raised NotImplementedError"
    except BaseException as exc:  # noqa: BLE001 - every failure is an outcome
        return f"raised {type(exc).__name__}" + (" (blocked)" if "graded:" in str(exc) else "")


def _defined_in(module: Any, prefix: str) -> list[tuple[str, Callable]]:
    """Every function of ``module`` and every method, property and static method of its classes."""
    found = []
    for key, obj in list(vars(module).items()):
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(inspect.unwrap(obj)):
            found.append((f"{prefix}.{key}", inspect.unwrap(obj)))
        elif inspect.isclass(obj):
            for name, member in vars(obj).items():
                member = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                fn = inspect.unwrap(member)
                if inspect.isfunction(fn):
                    found.append((f"{prefix}.{key}.{name}", fn))
    return found


def view_sweep(modules: list[str], cases: list[list[Any]]) -> dict[str, Any]:
    """Call every function and method of these gpipe_core modules with each case's arguments."""
    from gpipe_core.puzzle_ladder import PRACTICE_ID, ladder

    LADDER = ladder(PRACTICE_ID)  # noqa: N806 (the practice puzzles, as test_grading_view reads them)
    out = {}
    for name in modules:
        for key, fn in _defined_in(importlib.import_module(f"gpipe_core.{name}"), name):
            for i, case in enumerate(cases):
                args = [LADDER[int(a[7:])] if isinstance(a, str) and a.startswith("puzzle:") else a for a in case]
                out[f"{key}#{i}"] = _outcome(lambda fn=fn, args=args: fn(*args))
    return out


def alias_attacks(orders: list) -> dict[str, Any]:
    """The blocked tick placement, reached every way a module can be entered (the notebooks' flat path or its own)."""
    import gpipe_core.schedule as S
    from gpipe_core.schedule import _place as p

    import gpipe_core.schedules.schedule as N

    return {"S._place": _outcome(lambda: S._place(orders)), "vars(S)": _outcome(lambda: vars(S)["_place"](orders)),
            "getattr": _outcome(lambda: getattr(S, "_" + "place")(orders)), "import as": _outcome(lambda: p(orders)),
            "S.__dict__": _outcome(lambda: S.__dict__["_place"](orders)),
            "new path": _outcome(lambda: N._place(orders))}


def policy_attacks(spec: dict, x: torch.Tensor, g: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """A subclass of every engine policy, through the recomputation check's harness and inside GPipe."""
    import gpipe_core.checkpoint as C
    import probe_harness as h  # beside the probe, as in the sandbox

    from gpipe_core import GPipe

    out = {}
    for name, cls in list(vars(C).items()):
        if inspect.isclass(cls) and cls.__module__ == C.__name__ and hasattr(cls, "backward") and \
                not getattr(cls, "_is_protocol", False):
            sneaky = type("Sneaky", (cls,), {})
            out[name] = _outcome(lambda s=sneaky: h.run_isolated(s(), h.build(spec), x, 3, g)["grads"])
            out[f"{name} in GPipe"] = _outcome(lambda s=sneaky: GPipe(
                h.build(spec), balance=[3, 2], chunks=2, checkpoint=s(), devices="cpu").step(
                x, y, torch.nn.functional.cross_entropy, seed=3))
    return out


def weights_attacks(x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """The distributed pipe's micro-batch weighting, called on a stand-in for the pipe."""
    from gpipe_core.distributed.pipe import DistributedPipe

    me = SimpleNamespace(_loss_fn=lambda o, t: torch.ones(()), _batch=10)
    return {"DistributedPipe._weighted": _outcome(lambda: DistributedPipe._weighted(me, x, y))}

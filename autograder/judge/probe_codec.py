"""The probe's codec: learner values as plain data, and back, trusting no type it is handed.

Shared by the probe (inside the sandbox, where it encodes what learner code
returned) and the judge (outside, where it decodes and compares). Only exact
types are accepted: a subclass of ``torch.Tensor``, an object whose ``__eq__``
says yes to everything or a tuple subclass comes back as :class:`Foreign`,
which equals nothing. Standard library and torch only: the sandbox copies this
file beside ``probe.py``.
"""

from __future__ import annotations

import base64
import numbers
import operator
from typing import Any

import torch
from torch import Tensor

MAX_ELEMENTS = 5_000_000  # per tensor sent back
MAX_ITEMS = 100_000  # per list
MAX_DEPTH = 8


def type_name(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__


def encode(obj: Any, depth: int = 0) -> Any:
    """``obj`` as JSON-ready plain data, checking exact types (a subclass is reported, never trusted)."""
    from gpipe_core.schedules.schedule import Action

    if depth > MAX_DEPTH:
        return {"t": "foreign", "type": type_name(obj), "note": "nested too deeply"}
    if obj is None or type(obj) in (bool, str):
        return obj
    if type(obj) is int:
        return {"t": "int", "v": str(obj)} if abs(obj) > 2**53 else obj
    if type(obj) is float:
        return obj if obj == obj and abs(obj) != float("inf") else {"t": "float", "v": repr(obj)}
    if type(obj) is Tensor:
        return _encode_tensor(obj)
    if isinstance(obj, Tensor):
        return {"t": "foreign", "type": type_name(obj), "note": "a subclass of torch.Tensor"}
    if type(obj) is Action:
        parts = (obj.kind, obj.microbatch, obj.stage)
        if type(parts[0]) is str and type(parts[1]) is int and type(parts[2]) is int:
            return {"t": "action", "v": list(parts)}
        return {"t": "foreign", "type": "Action", "note": f"fields of types {[type(p).__name__ for p in parts]}"}
    if type(obj) in (list, tuple):
        if len(obj) > MAX_ITEMS:
            return {"t": "foreign", "type": type_name(obj), "note": f"{len(obj)} items"}
        return {"t": type(obj).__name__, "v": [encode(v, depth + 1) for v in obj]}
    if type(obj) is dict:
        return {"t": "dict", "v": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in list(obj.items())]}
    if isinstance(obj, bool):
        return {"t": "foreign", "type": type_name(obj)}
    if hasattr(type(obj), "__index__"):  # numpy integers, int subclasses: their true integer value
        return {"t": "index", "v": str(operator.index(obj)), "type": type_name(obj)}
    if isinstance(obj, float):  # a float subclass (numpy.float64): its true value
        return {"t": "real", "v": repr(float.__float__(obj)), "type": type_name(obj)}
    if isinstance(obj, numbers.Real):  # numpy.float32 and other registered reals: float() of them, a plain float
        return {"t": "real", "v": repr(float(obj)), "type": type_name(obj)}
    return {"t": "foreign", "type": type_name(obj)}


def _encode_tensor(t: Tensor) -> Any:
    if t.numel() > MAX_ELEMENTS:
        return {"t": "foreign", "type": "torch.Tensor", "note": f"{t.numel()} elements"}
    plain = Tensor.contiguous(Tensor.cpu(Tensor.detach(t)))
    raw = plain.reshape(-1).view(torch.uint8).numpy().tobytes() if plain.numel() else b""
    return {"t": "tensor", "dtype": str(plain.dtype).removeprefix("torch."), "shape": list(plain.shape),
            "data": base64.b64encode(raw).decode("ascii"), "requires_grad": bool(t.requires_grad),
            "graph": t.grad_fn is not None}


class Foreign:
    """A value of a type the judge does not accept; equal to nothing, itself included."""

    def __init__(self, type_name: str, note: str = "") -> None:
        self.type_name, self.note = type_name, note

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{self.type_name}{': ' + self.note if self.note else ''}>"


def decode(data: Any) -> Any:
    """The inverse of :func:`encode`: plain Python values, real tensors, :class:`Foreign` for the rest."""
    if data is None or isinstance(data, (bool, str, int, float)):
        return data
    kind = data.get("t") if isinstance(data, dict) else None
    if kind in ("list", "tuple"):
        items = [decode(v) for v in data["v"]]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {_hashable(decode(k)): decode(v) for k, v in data["v"]}
    if kind in ("int", "index"):
        return int(data["v"])
    if kind in ("float", "real"):
        return float(data["v"])
    if kind == "tensor":
        return _decode_tensor(data)
    if kind == "action":
        from gpipe_core.schedules.schedule import Action

        return Action(*data["v"])
    if kind == "foreign":
        return Foreign(str(data.get("type")), str(data.get("note", "")))
    return Foreign("unknown data", repr(data)[:80])


def _hashable(key: Any) -> Any:
    return key if getattr(key, "__hash__", None) is not None else repr(key)


def _decode_tensor(data: dict) -> Tensor | Foreign:
    dtype = getattr(torch, str(data.get("dtype")), None)
    if not isinstance(dtype, torch.dtype):
        return Foreign("torch.Tensor", f"unknown dtype {data.get('dtype')!r:.40}")
    raw = bytearray(base64.b64decode(data["data"]))
    flat = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
    t = flat.view(dtype).reshape(data["shape"]).clone()
    return t.requires_grad_() if data.get("requires_grad") and t.is_floating_point() else t


def plain_table(table: Any) -> list[list[Any]]:
    """A learner's table rebuilt from exact types only (the engine never sees a learner's objects)."""
    from gpipe_core.schedules.schedule import Action  # the grading view's, in the sandbox

    if type(table) is not list or any(type(t) is not list for t in table):
        raise TypeError(f"a schedule is a list of ticks, each a list of Action; got {type_name(table)}")
    out = []
    for tick in table:
        row = []
        for a in tick:
            if type(a) is not Action:
                raise TypeError(f"a tick holds {type_name(a)}, not Action(kind, microbatch, stage)")
            row.append(Action(str(a.kind), operator.index(a.microbatch), operator.index(a.stage)))
        out.append(row)
    return out

"""What a judge module is written with: queued probe calls, their replies, and failures with a cause.

A check queues calls on ``Ask`` while it draws its cases, then, once the one
probe run of the submission has answered them all, its ``verify()`` reads the
``Reply`` objects and raises ``Failed`` with a message for the learner.
Messages say what is wrong and where ("10 samples, M=4: sizes [4, 4, 2]
differ by more than one"), never the inputs' seeds or the grader's source.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .probe_codec import Foreign, decode, encode

Verify = Callable[[], None]
CheckFn = Callable[["Ask", Any], Verify]
DEFAULT_TIMEOUT = 60.0  # seconds one probe call may run


class Failed(Exception):
    """A graded cell fails; the message is shown to the learner."""


def expect(condition: object, message: str) -> None:
    """Raise :class:`Failed` with ``message`` unless ``condition`` holds (a real bool, not a learner's object)."""
    if condition is not True and not (type(condition) is bool and condition):
        raise Failed(message)


class Reply:
    """The probe's answer to one queued call (filled in after the probe ran)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.raw: dict[str, Any] | None = None
        self.missing = "the probe did not run"

    @property
    def error(self) -> dict[str, Any] | None:
        return None if self.raw is None else self.raw.get("error")

    def raised(self, *types: str) -> bool:
        """Whether the call raised one of ``types`` (exception class names, e.g. "ValueError")."""
        return self.error is not None and (not types or self.error["type"] in types)

    def value(self, what: str | None = None) -> Any:
        """The decoded return value; :class:`Failed` naming the cause if the call raised, hung or never ran."""
        what = what or self.what
        if self.raw is None:
            raise Failed(f"{what}: not run ({self.missing})")
        if "timeout" in self.raw:
            raise Failed(f"{what}: did not finish within {self.raw['timeout']:g} s (an endless loop, or far "
                         "too slow for this size)")
        if self.error is not None:
            where = f" (in {self.error['where']})" if self.error.get("where") else ""
            hint = (" (the grader loads only your exercise cells' functions, classes, imports and constants: "
                    "define what they use in those cells)" if self.error["type"] == "NameError" else "")
            raise Failed(f"{what} raised {self.error['type']}{where}: {self.error['message']}{hint}")
        try:
            return decode(self.raw["ok"])
        except Exception as exc:  # noqa: BLE001 - only a tampered channel sends data the codec never wrote
            raise Failed(f"{what}: the probe's reply cannot be read ({type(exc).__name__})") from None

    @property
    def seconds(self) -> float:
        return float((self.raw or {}).get("seconds", math.nan))


class Ask:
    """Collects the probe calls of every check of one submission."""

    def __init__(self, source: str = "") -> None:
        self.calls: list[dict[str, Any]] = []
        self.replies: list[Reply] = []
        self.source = source  # the learner's solution cells as text, for messages that name a cause
        self.group = ""  # the check now queuing calls: the probe answers one check's plain calls in one child
        self.student = ""  # the id of the student being graded ("" outside a class run): 07 draws puzzles from it

    def task(self, name: str, *, what: str | None = None, timeout: float = DEFAULT_TIMEOUT, **params: Any) -> Reply:
        """Queue the probe's task ``name`` (see ``probe.TASKS``) with ``params`` (plain data and tensors)."""
        self.calls.append({"task": name, "timeout": timeout, "group": self.group,
                           "params": {k: encode(v) for k, v in params.items()}})
        self.replies.append(Reply(what or name))
        return self.replies[-1]

    def call(self, fn: str, *args: Any, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> Reply:
        """Queue a call of the learner's function ``fn(*args, **kwargs)``."""
        shown = ", ".join([_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kwargs.items()])
        return self.task("call", what=f"{fn}({shown})", timeout=timeout, fn=fn, args=list(args), kwargs=kwargs)

    def attach(self, response: dict[str, Any]) -> None:
        """Give every reply its line of the probe's response."""
        replies = response.get("replies", {})
        for i, reply in enumerate(self.replies):
            reply.raw = replies.get(i, replies.get(str(i)))
            reply.missing = response.get("ended", "the probe did not answer")


def _short(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"<tensor of shape {tuple(value.shape)}>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Checks(dict):
    """``CHECKS = Checks()``; ``@CHECKS("test_x")`` registers the check of graded cell ``test_x``."""

    def __call__(self, grade_id: str) -> Callable[[CheckFn], CheckFn]:
        def register(fn: CheckFn) -> CheckFn:
            if grade_id in self:
                raise ValueError(f"two checks for {grade_id!r}")
            self[grade_id] = fn
            return fn

        return register


# ---- comparisons that name the cause ------------------------------------------------------------------

def as_tensor(value: Any, what: str) -> Tensor:
    """``value`` if it is a plain tensor, else :class:`Failed` saying what it was."""
    if isinstance(value, Foreign):
        raise Failed(f"{what}: expected a torch.Tensor, got {value!r}")
    if type(value) is not Tensor:
        raise Failed(f"{what}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def close(got: Any, want: Tensor, what: str, rtol: float = 1e-5, atol: float = 1e-7) -> None:
    """``got`` equals ``want`` in dtype, shape and value (within float32 tolerances).

    ``atol`` is relative to the tensor's largest value: an element near zero in a tensor of
    values around 3 may differ by float32 rounding of that size (the probe and the judge
    run in different processes).
    """
    got = as_tensor(got, what)
    expect(got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}")
    expect(tuple(got.shape) == tuple(want.shape), f"{what}: shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    scale = float(want.detach().abs().max()) if want.numel() and want.is_floating_point() else 0.0
    try:
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol * max(1.0, scale), check_device=False)
    except AssertionError:
        worst = (got.double() - want.double()).abs().max().item() if want.numel() else 0.0
        scale = want.double().abs().max().item() if want.numel() else 0.0
        raise Failed(f"{what} differs: largest difference {worst:.3g} (values up to {scale:.3g})") from None


def same_grads(got: Any, want: Sequence[Tensor | None], names: Sequence[str], where: str) -> None:
    """Every parameter gradient of the learner's run equals the reference's."""
    expect(type(got) is list and len(got) == len(want), f"{where}: expected {len(want)} parameter gradients")
    for g, w, name in zip(got, want, names):
        if w is None:
            continue
        expect(g is not None, f"{where}: parameter {name} got no gradient")
        close(g, w, f"{where}: gradient of {name}")


def number(value: Any, what: str) -> float:
    """A real number (int or float, numpy's too) or :class:`Failed`."""
    if type(value) in (int, float):
        return float(value)
    if type(value) is Tensor and value.numel() == 1:
        return float(value.item())
    raise Failed(f"{what}: expected a number, got {value!r}")

"""Property tests: over random K, M, batch sizes, balances and schedules the engine either
equals the sequential model or raises an error that names the fix. Never a hang (every step
has a timeout), never a silently wrong gradient."""

from __future__ import annotations

import copy
import random
import threading

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from gpipe_core import GPipe, sequential_step
from gpipe_core.schedules.schedule import Action, ScheduleError, dependencies, ticks_from_orders

CE = nn.functional.cross_entropy
FIX_WORDS = ("use ", "make ", "give ", "pass ", "move ", "reorder", "must ", "run it once", "at most", "chunks <=")


def random_valid_table(M: int, K: int, rng: random.Random) -> list[list[Action]]:
    """A random topological order of all 2MK actions, dealt to the stages, then placed on ticks."""
    pending = {Action(k, i, j) for k in "FB" for i in range(M) for j in range(K)}  # type: ignore[arg-type]
    done: set[Action] = set()
    orders: list[list[Action]] = [[] for _ in range(K)]
    while pending:
        ready = sorted(a for a in pending if all(d in done for d in dependencies(a, K)))
        a = rng.choice(ready)
        pending.remove(a)
        done.add(a)
        orders[a.stage].append(a)
    return ticks_from_orders(orders)


def shuffled_table(M: int, K: int, rng: random.Random) -> list[list[Action]]:
    """Every action once, one per stage per tick, in random order: usually wrong."""
    orders = [[Action(k, i, j) for k in "FB" for i in range(M)] for j in range(K)]  # type: ignore[arg-type]
    for order in orders:
        rng.shuffle(order)
    width = 2 * M
    return [[orders[j][t] for j in range(K)] for t in range(width)]


def model(L: int, dropout: float) -> nn.Sequential:
    torch.manual_seed(L)
    layers = [nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Dropout(dropout)) for _ in range(L - 1)]
    return nn.Sequential(*layers, nn.Linear(6, 3))


@st.composite
def configs(draw: st.DrawFn) -> dict:
    L = draw(st.integers(1, 6))
    K = draw(st.integers(1, L + 1))
    N = draw(st.integers(1, 9))
    M = draw(st.integers(1, 10))
    if K <= L and draw(st.booleans()):
        cuts = sorted(draw(st.sets(st.integers(1, L - 1), min_size=K - 1, max_size=K - 1))) if K > 1 else []
        bounds = [0, *cuts, L]
        balance = [b - a for a, b in zip(bounds, bounds[1:])]
        if draw(st.integers(0, 9)) == 0:
            balance[-1] += draw(st.sampled_from([-1, 1]))  # sometimes wrong
    else:
        balance = None
    return {"L": L, "K": K, "N": N, "M": M, "balance": balance,
            "schedule": draw(st.sampled_from(["gpipe", "1f1b", "random", "shuffled"])),
            "checkpoint": draw(st.sampled_from(["always", "except_last", "never"])),
            "dropout": draw(st.sampled_from([0.0, 0.5])), "seed": draw(st.integers(0, 2**31))}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_equal_to_sequential_or_a_clear_error(cfg: dict) -> None:
    rng = random.Random(cfg["seed"])
    net = model(cfg["L"], cfg["dropout"])
    ref = copy.deepcopy(net)
    g = torch.Generator().manual_seed(cfg["seed"])
    x, y = torch.randn(cfg["N"], 6, generator=g), torch.randint(0, 3, (cfg["N"],), generator=g)
    K, M = cfg["K"], cfg["M"]
    schedule = {"random": lambda: random_valid_table(M, K, rng),
                "shuffled": lambda: shuffled_table(M, K, rng)}.get(cfg["schedule"], lambda: cfg["schedule"])()
    try:
        pipe = GPipe(net, balance=cfg["balance"], partitions=None if cfg["balance"] else K, chunks=M,
                     checkpoint=cfg["checkpoint"], schedule=schedule, timeout=20)
        loss = pipe.step(x, y, CE, seed=cfg["seed"])
    except (ValueError, TypeError, ScheduleError) as exc:
        message = str(exc)
        assert any(w in message for w in FIX_WORDS), f"error without a fix: {message}"
        return
    ref_loss = sequential_step(ref, x, y, CE, balance=pipe.balance, chunks=M, seed=cfg["seed"])
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-7)
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)
    assert not any(t.name.startswith("gpipe-stage") for t in threading.enumerate())

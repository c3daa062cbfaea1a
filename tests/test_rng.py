"""Per-stage random streams: seeds are a pure function, and only the stage's own dropout uses its stream."""

from __future__ import annotations

import torch
from torch import nn

from gpipe_core.engine.rng import StageRandom, stage_seed


def test_stage_seed_is_deterministic_and_distinct() -> None:
    seeds = {stage_seed(7, i, j) for i in range(16) for j in range(8)}
    assert len(seeds) == 16 * 8
    assert stage_seed(7, 3, 2) == stage_seed(7, 3, 2) != stage_seed(8, 3, 2)
    assert all(0 <= s < 2**63 for s in seeds)


def test_dropout_draws_from_the_stage_stream_only_while_active() -> None:
    layer = nn.Dropout(0.5)
    rng = StageRandom(nn.Sequential(layer), torch.device("cpu"))
    x = torch.ones(64)
    rng.seed(1, 0, 0)
    with rng.active():
        a = layer(x)
    rng.seed(1, 0, 0)
    with rng.active():
        b = layer(x)
    assert torch.equal(a, b)  # same seed, same mask
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    rng.seed(1, 0, 0)
    with rng.active():
        layer(x)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global generator is left as it was
    torch.manual_seed(0)
    outside = layer(x)  # not active: the global generator, as in plain PyTorch
    torch.manual_seed(0)
    assert torch.equal(outside, layer(x))


def test_state_replays_and_hooks_come_off() -> None:
    layer = nn.Dropout(0.5)
    rng = StageRandom(nn.Sequential(layer), torch.device("cpu"))
    assert rng.has_random_layers
    rng.seed(3, 1, 1)
    state = rng.get_state()
    with rng.active():
        first = layer(torch.ones(32))
    rng.set_state(state)
    with rng.active():
        assert torch.equal(layer(torch.ones(32)), first)
    rng.remove()
    assert not rng.has_random_layers and not layer._forward_pre_hooks

"""The language model: through the pipe it equals the sequential model; tokenizer, data and CLI path."""

from __future__ import annotations

import copy
import itertools
import re

import pytest
import torch
from helpers.engine import assert_grads_close

from gpipe_core import GPipe, sequential_step
from gpipe_core.cli import main
from gpipe_core.workloads.gpt import generate, gpt, lm_loss, text_batches
from gpipe_core.workloads.tokenizer import VOCAB_SIZE, corpus, decode, encode


def tiny(dropout: float = 0.0) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return gpt(layers=3, dim=16, heads=2, context=12, dropout=dropout)


def tokens_batch(n: int = 6, T: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    return next(text_batches(encode(corpus()[:5000]), n, T, seed=1))


@pytest.mark.parametrize(("K", "M", "checkpoint", "schedule"),
                         list(itertools.product([1, 2, 5], [1, 3], ["always", "except_last", "never"],
                                                ["gpipe", "1f1b"])))
def test_the_pipe_equals_the_sequential_model(K: int, M: int, checkpoint: str, schedule: str) -> None:
    model = tiny(dropout=0.2)
    ref = copy.deepcopy(model)
    x, y = tokens_batch()
    with GPipe(model, partitions=K, chunks=M, checkpoint=checkpoint, schedule=schedule) as pipe:
        loss = pipe.step(x, y, lm_loss, seed=4)
    ref_loss = sequential_step(ref, x, y, lm_loss, balance=pipe.balance, chunks=M, seed=4)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=0)
    assert_grads_close(model, ref)


def test_without_dropout_the_pipe_equals_the_full_batch() -> None:
    model = tiny()
    ref = copy.deepcopy(model)
    x, y = tokens_batch()
    with GPipe(model, partitions=3, chunks=3) as pipe:
        loss = pipe.step(x, y, lm_loss)
    want = lm_loss(ref(x), y)
    want.backward()
    torch.testing.assert_close(loss, want.detach(), rtol=1e-5, atol=0)
    assert_grads_close(model, ref)


def test_attention_is_causal() -> None:
    model = tiny().eval()
    x, _ = tokens_batch(n=1)
    changed = x.clone()
    changed[0, 7] = (changed[0, 7] + 1) % VOCAB_SIZE
    a, b = model(x), model(changed)
    torch.testing.assert_close(a[0, :7], b[0, :7])
    assert not torch.allclose(a[0, 7:], b[0, 7:])


def test_generate_extends_the_prompt_repeatably() -> None:
    model = tiny().eval()
    prompt = encode("MENENIUS:")
    out = generate(model, prompt, 20, seed=3)
    assert out.shape == (len(prompt) + 20,) and torch.equal(out[: len(prompt)], prompt)
    assert torch.equal(out, generate(model, prompt, 20, seed=3))
    assert not torch.equal(out, generate(model, prompt, 20, seed=4))
    long = generate(model, encode("x" * 30), 5)  # longer than the context of 12: only the last 12 are seen
    assert long.shape == (35,)


def test_batches_are_next_token_pairs_from_the_text() -> None:
    text = corpus()
    tokens = encode(text)
    x, y = next(text_batches(tokens, 4, 16, seed=0))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    for row, nxt in zip(x, y):
        window = decode(row) + decode(nxt[-1:])
        assert window in text


def test_tokenizer_round_trip_and_corpus() -> None:
    for text in ["", "First Citizen:\nSpeak, speak.", "naïve café, ünïcødé ✓"]:
        ids = encode(text)
        assert ids.dtype == torch.long and (ids.numel() == 0 or int(ids.max()) < VOCAB_SIZE)
        assert decode(ids) == text
    text = corpus()
    assert 150_000 < len(text) < 300_000 and text.startswith("First Citizen:")
    with pytest.raises(ValueError, match="integer tensor"):
        decode(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        decode(torch.tensor([300]))


def test_errors_name_the_fix() -> None:
    model = tiny()
    with pytest.raises(ValueError, match="exceeds the model's context"):
        model(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="not divisible by heads"):
        gpt(dim=10, heads=3)


def test_gpipe_train_gpt(capsys) -> None:  # noqa: ANN001
    assert main(["train", "--model", "gpt", "-K", "2", "-M", "2", "--layers", "2", "--hidden-dim", "32",
                 "--batch-size", "8", "--context", "16", "--steps", "6", "--lr", "1e-2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "GPT decoder of 2 blocks" in out and "Shakespeare" in out
    losses = [float(v) for v in re.search(r"loss per step: (.*)", out).group(1).split()]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert re.search(r"training throughput: [\d,]+ tokens/s", out)
    assert re.search(r"stage 1: +\d+\.\d+ MiB measured", out)
    assert float(re.search(r"sequential model: (\S+)", out).group(1)) < 1e-5

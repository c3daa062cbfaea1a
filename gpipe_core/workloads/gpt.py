"""A small GPT-style decoder as an ``nn.Sequential``, and batches of text to train it on.

The pipeline engine cuts ``nn.Sequential`` stacks, so the language model is
written as one: an embedding layer (byte tokens plus learned positions), then
``layers`` decoder blocks (causal self-attention and an MLP, each inside a
pre-norm residual), then a final norm and the head that gives next-token
logits. Every block is one item of the stack, so the partitioner balances
blocks, and every block maps ``(batch, time, dim)`` to the same shape: the
activation that crosses a stage boundary is one float tensor.

Stage 0 is the only stage that sees integers (the token ids); the engine
passes them through without a gradient. Dropout lives in ``nn.Dropout``
layers only (attention itself draws no random numbers), so the engine's
per-micro-batch random streams replay it exactly under recomputation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .tokenizer import VOCAB_SIZE


class Embedding(nn.Module):
    """Token ids ``(B, T)`` to vectors ``(B, T, dim)``: token embedding plus a learned position embedding."""

    def __init__(self, vocab: int, context: int, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.context = context
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(context, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.dtype.is_floating_point or ids.dim() != 2:
            raise ValueError(f"the embedding expects integer token ids of shape (batch, time), got {ids.dtype} "
                             f"{tuple(ids.shape)}: encode text with gpipe_core.workloads.tokenizer.encode")
        T = ids.shape[1]
        if T > self.context:
            raise ValueError(f"sequence of {T} tokens exceeds the model's context of {self.context}: "
                             "cut it or build the model with a longer context")
        return self.drop(self.tokens(ids) + self.positions(torch.arange(T, device=ids.device)))


class CausalSelfAttention(nn.Module):
    """Multi-head attention in which position t attends to positions 0..t only."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}: pick heads that divide dim")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, heads, T, D/heads)
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, T, D)))


class Block(nn.Module):
    """x + attention(norm(x)), then x + MLP(norm(x)): one pipeline layer of the decoder."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Head(nn.Module):
    """Final LayerNorm and the projection to next-token logits ``(B, T, vocab)``."""

    def __init__(self, dim: int, vocab: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.norm(x))


def gpt(layers: int = 4, dim: int = 128, heads: int = 4, context: int = 64, vocab: int = VOCAB_SIZE,
        dropout: float = 0.0) -> nn.Sequential:
    """``Embedding, Block x layers, Head``: ``layers + 2`` items for the partitioner."""
    if layers < 1:
        raise ValueError(f"the decoder needs at least one block, got layers={layers}")
    return nn.Sequential(Embedding(vocab, context, dim, dropout),
                         *[Block(dim, heads, dropout) for _ in range(layers)], Head(dim, vocab))


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean next-token cross-entropy over every position of every sequence (nats per token)."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def text_batches(tokens: Tensor, batch: int, context: int, seed: int = 0):  # noqa: ANN201 - an endless generator
    """Endless ``(inputs, next tokens)`` pairs: ``batch`` random windows of ``context`` tokens each.

    ``targets[b, t] = inputs[b, t + 1]`` in the text: the model learns to
    predict the next byte. Windows are drawn from a generator seeded with
    ``seed``, so a run is repeatable.
    """
    if tokens.dim() != 1 or tokens.numel() <= context:
        raise ValueError(f"need a 1-D token tensor longer than the context {context}, got shape "
                         f"{tuple(tokens.shape)}")
    g = torch.Generator().manual_seed(seed)
    offsets = torch.arange(context + 1)
    while True:
        starts = torch.randint(0, tokens.numel() - context, (batch,), generator=g)
        windows = tokens[starts[:, None] + offsets]
        yield windows[:, :-1].contiguous(), windows[:, 1:].contiguous()


@torch.no_grad()
def generate(model: nn.Module, prompt: Tensor, new_tokens: int, temperature: float = 1.0,
             seed: int = 0) -> Tensor:
    """``prompt`` (1-D ids) extended by ``new_tokens`` sampled ones; ``model`` maps (B, T) ids to logits."""
    g = torch.Generator().manual_seed(seed)
    context = next(m.context for m in model.modules() if isinstance(m, Embedding))
    ids = prompt.clone()
    for _ in range(new_tokens):
        logits = model(ids[-context:][None])[0, -1].float().cpu()
        probs = torch.softmax(logits / max(temperature, 1e-6), dim=-1)
        ids = torch.cat([ids, torch.multinomial(probs, 1, generator=g).to(ids.device)])
    return ids

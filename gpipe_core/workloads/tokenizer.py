"""A byte tokenizer: the simplest one that round-trips every text exactly.

A language model needs integer tokens. Byte-level tokens (the UTF-8 bytes of
the text, ids 0-255) need no vocabulary file, never meet an unknown symbol,
and decode back to the very same text, which is all a pipeline-parallelism
course needs: the point is the integer tensor that travels into stage 0, not
the quality of the tokens.
"""

from __future__ import annotations

from importlib.resources import files

import torch
from torch import Tensor

VOCAB_SIZE = 256


def encode(text: str) -> Tensor:
    """The UTF-8 bytes of ``text`` as a 1-D int64 tensor of ids in [0, 256)."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)


def decode(tokens: Tensor) -> str:
    """The text whose UTF-8 bytes are ``tokens`` (invalid byte sequences become U+FFFD)."""
    if tokens.dtype.is_floating_point or tokens.dim() != 1:
        raise ValueError(f"decode expects a 1-D integer tensor of byte ids, got {tokens.dtype} of shape "
                         f"{tuple(tokens.shape)}: pass one sequence, e.g. tokens[0]")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= VOCAB_SIZE):
        raise ValueError(f"byte ids must lie in [0, {VOCAB_SIZE}); got {int(tokens.min())}..{int(tokens.max())}")
    return bytes(tokens.tolist()).decode("utf-8", errors="replace")


def corpus() -> str:
    """The shipped public-domain text (Shakespeare; see gpipe_core/workloads/data/README.md)."""
    return files(__package__).joinpath("data/shakespeare.txt").read_text(encoding="utf-8")

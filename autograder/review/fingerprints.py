"""Winnowed fingerprints (Schleimer, Wilkerson and Aiken 2003, the method behind MOSS).

Every run of ``K`` consecutive tokens is hashed; in each window of ``W``
consecutive hashes the smallest is kept. Two texts sharing a run of at least
``K + W - 1`` tokens are then guaranteed to share a fingerprint, and any
shared fingerprint is a shared run of ``K`` tokens. Hashing is a rolling
polynomial over stable token ids (not Python's salted ``hash``), so the same
code gives the same fingerprints in every process; the cost is linear in the
number of tokens.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Sequence

K = 12  # tokens per k-gram: about one line of code
W = 8  # window: any shared run of K + W - 1 = 19 tokens is seen
_MOD = (1 << 61) - 1
_BASE = 1_000_003
_TOP = pow(_BASE, K - 1, _MOD)
_IDS: dict[str, int] = {}


def _id(token: str) -> int:
    found = _IDS.get(token)
    if found is None:
        found = _IDS[token] = zlib.crc32(token.encode()) + 1
    return found


def kgrams(tokens: Sequence[str]) -> list[int]:
    """The hash of every K-gram of ``tokens``, in order (empty when there are fewer than K)."""
    if len(tokens) < K:
        return []
    h = 0
    for t in tokens[:K]:
        h = (h * _BASE + _id(t)) % _MOD
    out = [h]
    for i in range(K, len(tokens)):
        h = ((h - _id(tokens[i - K]) * _TOP) * _BASE + _id(tokens[i])) % _MOD
        out.append(h)
    return out


def winnow(hashes: Sequence[int]) -> dict[int, int]:
    """The selected fingerprints: hash -> position of its first k-gram (the rightmost minimum of each window)."""
    if len(hashes) <= W:
        return {min(hashes): hashes.index(min(hashes))} if hashes else {}
    out: dict[int, int] = {}
    window: deque[int] = deque()  # positions with increasing hashes: the front is the window's minimum
    for i, h in enumerate(hashes):
        while window and hashes[window[-1]] >= h:
            window.pop()
        window.append(i)
        if window[0] <= i - W:
            window.popleft()
        if i >= W - 1:
            out.setdefault(hashes[window[0]], window[0])
    return out

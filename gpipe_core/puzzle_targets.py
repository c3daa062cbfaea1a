"""Best step time of each ladder puzzle, written by ``python -m gpipe_core.puzzles`` from the exact
search in :mod:`gpipe_core.puzzle_search` (tests/test_puzzles.py checks it against a fresh search).
"""

TARGETS: dict[str, int] = {
    "first light": 15,
    "one in, one out": 33,
    "tighter than K": 39,
    "split the backward": 27,
    "split under pressure": 31,
    "slow input gradients": 28,
    "two chunks per device": 42,
    "the V": 38,
    "V under pressure": 41,
}

"""Shared fixtures: a small model, the book's site and browser (helpers.book), and a guard on signal state.

Every test must leave SIGINT's handler as it found it. A library that runs an
asyncio loop in-process (``loop.add_signal_handler``) and never removes the
handler leaves a no-op in its place; from then on Ctrl-C, and
``_thread.interrupt_main`` in the engine's interrupt test, do nothing. The
guard restores the handler and fails the test that changed it, naming it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from helpers.book import browser, page, phone, server, site  # noqa: F401 - fixtures of tests/test_book.py
from helpers.engine import small_model
from torch import nn


@pytest.fixture
def model() -> nn.Sequential:
    return small_model()


@pytest.fixture(autouse=True)
def _sigint_left_alone() -> Iterator[None]:
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is not before:
        signal.signal(signal.SIGINT, before)
        pytest.fail(f"this test left SIGINT handled by {after!r} instead of {before!r}: restore the handler "
                    "(e.g. close the asyncio loop or call loop.remove_signal_handler)")

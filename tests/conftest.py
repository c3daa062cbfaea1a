"""Shared fixtures, the marks that say what each test needs, and two guards every test runs under.

Fixtures: a small model, and the book's site and browser (helpers.book).

Marks (helpers.needs): at collection every test gets the marks its fixtures
imply (``graded`` -> class and sandbox, ``site`` -> book, ``browser`` ->
browser, ``released`` -> slow), so ``make test-fast`` can leave them out;
explicit marks cover the rest. Tests that share an expensive session fixture
(the graded class, the built site) are scheduled as one group on one of
``make test``'s pytest-xdist workers, so each fixture is built only once.

While a test runs, every command it starts is seen through an audit hook, and
one that needs a mark the test lacks (bubblewrap, torchrun, Chromium, a book
build) fails it at teardown.

SIGINT: every test must leave SIGINT's handler as it found it. A library that
runs an asyncio loop in-process (``loop.add_signal_handler``) and never
removes the handler leaves a no-op in its place; from then on Ctrl-C, and
``_thread.interrupt_main`` in the engine's interrupt test, do nothing. The
guard restores the handler and fails the test that changed it, naming it.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator

import pytest
from helpers.book import browser, page, phone, server, site  # noqa: F401 - fixtures of tests/test_book.py
from helpers.engine import small_model
from helpers.needs import COLLECTED, LAUNCHED, fixture_needs, make_scheduler, unmarked
from torch import nn


def _audit(event: str, args: tuple) -> None:
    if event == "subprocess.Popen":  # (executable, args, cwd, env); args is a string under shell=True
        LAUNCHED.append(list(args[1]) if isinstance(args[1], (list, tuple)) else [args[1]])


sys.addaudithook(_audit)  # for the whole session: an audit hook cannot be removed


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m deselection, so the marks it selects on are there
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for mark in sorted(fixture_needs(item.fixturenames)):
            item.add_marker(mark)
    config.stash[COLLECTED] = list(items)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: without xdist (WORKERS=0 elsewhere) nothing asks
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """make test's workers: the graded class and the built site stay on one worker each (helpers.needs)."""
    return make_scheduler(config, log)


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures are set up: their launches count too
def pytest_runtest_setup(item: pytest.Item) -> None:
    LAUNCHED.clear()


@pytest.hookimpl(trylast=True)  # after the test's fixtures were torn down: their launches count too
def pytest_runtest_teardown(item: pytest.Item) -> None:
    problems = unmarked(LAUNCHED, {m.name for m in item.iter_markers()})
    LAUNCHED.clear()
    if problems:
        pytest.fail("this test started commands its marks do not declare (tests/helpers/needs.py):\n  "
                    + "\n  ".join(problems), pytrace=False)


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

"""Helpers the tests share, as a package so no conftest or test module can shadow them.

* ``helpers.engine``: small seeded models and batches and a gradient comparison for the engine tests.
* ``helpers.fakes``: a fake stage that records its calls, for the runtime and mailbox tests.
* ``helpers.liars``: values that lie about equality or their type, for the judge's tests.
* ``helpers.ranks``: torchrun bounded in time, a rank's two-step loop and the comparison, for the distributed tests.
* ``helpers.book``: the built site, its server and Chromium pages, and the solution-leak search, for the book tests.
"""

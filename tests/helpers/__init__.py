"""Helpers the tests share, as a package so no conftest or test module can shadow them.

``helpers.engine``: small seeded models and batches and a gradient comparison
for the engine tests.
"""

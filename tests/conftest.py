"""Shared fixture for the engine tests: a small model (helpers live in engine_helpers.py)."""

from __future__ import annotations

import pytest
from engine_helpers import small_model
from torch import nn


@pytest.fixture
def model() -> nn.Sequential:
    return small_model()

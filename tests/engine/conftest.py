"""Fixtures for the engine tests."""

from __future__ import annotations

import pytest
from engine_helpers import make_core


@pytest.fixture(scope="module")
def gpt2_core(tiny_model_dir):
    return make_core(tiny_model_dir, prefix_cache_mb=0)

"""A tokenised corpus for the training tests (stdlib Python, written per the token shard contract)."""

from __future__ import annotations

from pathlib import Path

import pytest

from codecomplete.models.tiny import stdlib_sources

from .shards import write_token_dataset


@pytest.fixture(scope="session")
def token_dataset(tiny_model_dir, tmp_path_factory) -> Path:
    texts = stdlib_sources(900_000)
    out = tmp_path_factory.mktemp("tokens")
    # Small shards so every reader path crosses shard boundaries.
    return write_token_dataset(
        out, tiny_model_dir, {"train": texts[:-6], "valid": texts[-6:]}, shard_tokens=40_000
    )

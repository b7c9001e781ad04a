"""One planted corpus and one curation run of it, shared by the data tests (they read, never write)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from corpus import build_corpus, recipe  # noqa: E402


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def curated(corpus, tmp_path_factory):
    """(corpus, output folder, stats) of one full run of the planted corpus."""
    from codecomplete.data.config import CurateConfig
    from codecomplete.data.pipeline import run_curate

    out = tmp_path_factory.mktemp("curated") / "out"
    stats = run_curate(CurateConfig.from_dict(recipe(corpus, out)))
    return corpus, out, stats

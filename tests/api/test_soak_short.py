"""A short soak (scripts/soak.py, what `make soak` runs for minutes): streaming clients against the
real server, half of them dropping mid-stream. No errors, and once the clients stop the engine has
nothing running or queued: no slot leaks when clients disconnect."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest

from serving import serve_subprocess

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def load_soak():
    spec = importlib.util.spec_from_file_location("soak", ROOT / "scripts" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_short_soak_has_no_errors_and_leaks_no_slots(tiny_model_dir):
    soak = load_soak()
    with serve_subprocess(tiny_model_dir, "--num-threads", "1") as base:
        tally = asyncio.run(soak.run_clients(base, clients=6, seconds=12, disconnect=0.5, seed=1))
        running, queued = soak.leaked_slots(base)
    assert tally.errors == []
    assert tally.completed > 0 and tally.dropped > 0  # both paths were exercised
    assert (running, queued) == (0, 0)

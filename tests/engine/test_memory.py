"""The malloc_trim housekeeping thread (engine/memory.py) runs while the engine serves and stops with it."""

from __future__ import annotations

import threading
import time

import pytest

from codecomplete.engine.memory import MemoryTrimmer


def _trim_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "codecomplete-malloc-trim"]


def test_trims_periodically_and_stops():
    t = MemoryTrimmer(interval_s=0.01)
    if not t.available:
        pytest.skip("not glibc: malloc_trim does not exist here")
    t.start()
    deadline = time.monotonic() + 10
    while t.trims < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert t.trims >= 3
    t.stop()
    assert not _trim_threads()
    count = t.trims
    time.sleep(0.05)
    assert t.trims == count  # stopped means stopped


def test_trimming_returns_freed_memory_to_the_os():
    psutil = pytest.importorskip("psutil")
    t = MemoryTrimmer()
    if not t.available:
        pytest.skip("not glibc")
    proc = psutil.Process()
    # Many medium blocks (below glibc's mmap threshold, so they live in the heap), then free all
    # but the last: the heap cannot shrink from its top, so only a trim gives the pages back.
    blocks = [bytearray(64 * 1024) for _ in range(3000)]  # ~190 MiB
    keep = blocks[-1]
    del blocks
    before = proc.memory_info().rss
    t.trim()
    after = proc.memory_info().rss
    assert keep is not None
    assert before - after > 100 * 2**20, (before / 2**20, after / 2**20)

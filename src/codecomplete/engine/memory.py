"""Give freed memory back to the operating system while serving.

A soak (scripts/soak.py, BENCHMARKS.md) showed resident memory beyond the bounded prefix cache
growing by a third over ten minutes while Python's own allocations did not grow at all
(tracemalloc, first minute -> end: no line grew by more than 0.1 MiB). The growth is native: torch's
CPU tensors (KV caches whose shape changes with every batch) are malloc'd and freed, and glibc keeps
freed chunks inside its arenas instead of returning them, so RSS tracks the high-water mark of every
batch shape seen. `malloc_trim(0)` returns the free pages of every arena; a daemon thread calls it
every few seconds. A no-op where libc is not glibc (macOS, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

log = logging.getLogger(__name__)

TRIM_INTERVAL_S = 10.0


def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class MemoryTrimmer:
    """Calls malloc_trim(0) every `interval_s` seconds in a daemon thread until stop()."""

    def __init__(self, interval_s: float = TRIM_INTERVAL_S):
        self.interval_s = interval_s
        self._trim = _malloc_trim()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.trims = 0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def trim(self) -> None:
        if self._trim is not None:
            self._trim(0)
            self.trims += 1

    def start(self) -> None:
        if self._trim is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="codecomplete-malloc-trim", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.trim()
            except Exception:  # never let housekeeping take the server down
                log.exception("malloc_trim failed; not trying again")
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

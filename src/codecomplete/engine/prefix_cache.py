"""Prefix reuse (llama.cpp's keystroke pattern): remember the KV of recent prompts and hand back
the longest cached prefix of a new prompt, so only the rest is prefilled.

Pure Python bookkeeping: the cached values are opaque (the runner stores per-layer KV tensors).
Bounded by the total size of the cached values (the caller says each one's size, e.g. in bytes),
least recently used first out.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


def common_prefix_len(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Length of the longest common prefix, by binary search over C-speed slice comparisons."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class PrefixCache:
    def __init__(self, max_size: int, min_tokens: int = 16):
        self.max_size = max_size
        self.min_tokens = min_tokens
        self.entries: OrderedDict[tuple[int, ...], tuple[Any, int]] = OrderedDict()
        self.size = 0
        self.lookups = 0
        self.hits = 0
        self.tokens_reused = 0

    @property
    def enabled(self) -> bool:
        return self.max_size > 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0

    def lookup(self, ids: list[int] | tuple[int, ...]) -> tuple[int, Any]:
        """(n, value): the first n tokens of `ids` have cached KV in `value` (which may hold more).

        At most len(ids) - 1 tokens are reused: the last prompt token is always run, for its logits.
        """
        if not self.enabled or len(ids) <= self.min_tokens:
            return 0, None
        self.lookups += 1
        key = tuple(ids)
        best_n, best_key = 0, None
        for cached in self.entries:
            n = common_prefix_len(cached, key)
            if n > best_n:
                best_n, best_key = n, cached
        best_n = min(best_n, len(ids) - 1)
        if best_key is None or best_n < self.min_tokens:
            return 0, None
        self.entries.move_to_end(best_key)
        self.hits += 1
        self.tokens_reused += best_n
        return best_n, self.entries[best_key][0]

    def insert(self, ids: list[int] | tuple[int, ...], value: Any, size: int | None = None) -> None:
        """Remember `value` (the KV of `ids`), of `size` units (default: one per token)."""
        key = tuple(ids)
        size = len(key) if size is None else size
        if not self.enabled or len(key) < self.min_tokens or size > self.max_size:
            return
        if key in self.entries:
            self.entries.move_to_end(key)
            return
        # A cached prompt that is a prefix of this one is now redundant.
        for cached in [c for c in self.entries if len(c) < len(key) and key[: len(c)] == c]:
            self._drop(cached)
        self.entries[key] = (value, size)
        self.size += size
        while self.size > self.max_size:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: tuple[int, ...]) -> None:
        self.size -= self.entries.pop(key)[1]

    def __len__(self) -> int:
        return len(self.entries)

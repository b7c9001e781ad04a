"""Stopping policies checked every step: stop strings (across token boundaries) and Copilot's
trim-by-indentation (the rule lives in engine/indent.py). Both work on the completion's text and say how much of it is safe to send.

A stop string is cut at its first occurrence and never sent; text that could still be the start of a
stop string is held back. Only a rolling tail of the text is searched each step (TGI's
StopSequenceCriteria does the same).
"""

from __future__ import annotations

from codecomplete.engine.indent import trim_point


class StopChecker:
    """One per sequence. `check(text, final)` -> (safe_len, stopped)."""

    def __init__(self, stop: list[str], indent_trim: int | None = None):
        self.stop = [s for s in stop if s]
        self._max = max((len(s) for s in self.stop), default=0)
        self.indent_trim = indent_trim
        self._searched = 0  # stop strings cannot start before this offset (checked already)

    def check(self, text: str, final: bool = False) -> tuple[int, bool]:
        """`text` is the whole completion so far. Returns how many characters of it may be sent and
        whether the sequence stops here (then text[:safe_len] is the final completion)."""
        limit = len(text)
        stopped = False
        safe = limit
        if self.stop:
            start = max(0, self._searched - self._max + 1)
            hits = [i for i in (text.find(s, start) for s in self.stop) if i >= 0]
            if hits:
                limit = safe = min(hits)
                stopped = True
            else:
                self._searched = len(text)
                if not final:
                    safe = limit - self._held_for_stop(text)
        if self.indent_trim is not None:
            # Copilot's trim_by_indentation (engine/indent.py, shared with the API): text whose
            # line could still end the block is held back until it is decided.
            cut, indent_safe = trim_point(text[:limit], self.indent_trim, complete=stopped or final)
            if cut is not None:
                return cut, True
            safe = min(safe, indent_safe)
        return safe, stopped

    def _held_for_stop(self, text: str) -> int:
        for k in range(min(self._max - 1, len(text)), 0, -1):
            tail = text[-k:]
            if any(s.startswith(tail) for s in self.stop):
                return k
        return 0


def last_line_boundary(text: str) -> int:
    """Where a completion cut short by its deadline ends: before the last line break, so the
    client gets whole lines; a text of one unfinished line is kept whole (the single-line case)."""
    cut = text.rfind("\n")
    return len(text) if cut < 0 else cut

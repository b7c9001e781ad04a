"""Stopping policies checked every step: stop strings (across token boundaries) and Copilot's
trim-by-indentation. Both work on the completion's text and say how much of it is safe to send.

A stop string is cut at its first occurrence and never sent; text that could still be the start of a
stop string is held back. Only a rolling tail of the text is searched each step (TGI's
StopSequenceCriteria does the same).
"""

from __future__ import annotations

import re

# Lines at the block's own indentation that continue it rather than end it.
_CONTINUATIONS = ("}", "]", ")", "else", "elif", "except", "finally", "catch", "case", "default")
_TRAILING_BLANK_LINES = re.compile(r"(\n[ \t]*)+$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _continues_block(stripped: str) -> bool:
    for word in _CONTINUATIONS:
        if stripped.startswith(word):
            rest = stripped[len(word) :]
            if not word[0].isalpha() or not rest or not (rest[0].isalnum() or rest[0] == "_"):
                return True
    return False


def indent_cut(text: str, c: int) -> int | None:
    """Where PROTOCOLS.md's trim-by-indentation rule ends `text` (None: not ended).

    Going through the lines after the first, the first non-blank line whose indentation is below
    `c`, or equal to `c` without continuing the block, ends the completion; the cut drops that line
    and the blank lines before it. Only complete lines (followed by a newline) or, when the caller
    passes the final text, the last line too, should be given here.
    TODO(api): call codecomplete.engine.indent once branch `api` ships it, so both sides agree.
    """
    pos = text.find("\n")
    if pos < 0:
        return None
    start = pos + 1
    while start <= len(text):
        end = text.find("\n", start)
        line = text[start : end if end >= 0 else len(text)]
        stripped = line.lstrip(" \t")
        if stripped:
            ind = _indent(line)
            if ind < c or (ind == c and not _continues_block(stripped)):
                return len(_TRAILING_BLANK_LINES.sub("", text[:start]))
        if end < 0:
            break
        start = end + 1
    return None


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
            complete = stopped or final
            body = text[:limit] if complete else text[: text.rfind("\n") + 1]
            cut = indent_cut(body, self.indent_trim)
            if cut is not None:
                return cut, True
            if not complete and "\n" in text:
                # The current line's fate is unknown until it ends: hold it and any blank lines.
                first_line_end = text.find("\n")
                safe = min(safe, max(first_line_end, len(_TRAILING_BLANK_LINES.sub("", body[:-1]))))
        return safe, stopped

    def _held_for_stop(self, text: str) -> int:
        for k in range(min(self._max - 1, len(text)), 0, -1):
            tail = text[-k:]
            if any(s.startswith(tail) for s in self.stop):
                return k
        return 0

"""Copilot's `extra.trim_by_indentation`: end a completion where the current block ends.

Pure text functions, shared by the API (which computes the indentation `c` from the prompt) and
the engine's stopping code (which cuts the generated text). The rule is the one in PROTOCOLS.md:

    Let c be the larger of the indentation of the last non-blank prompt line and
    extra.next_indent. Going through the completion's lines after the first, cut before the first
    non-blank line whose indentation is below c, or equal to c unless it continues the block
    (it starts with `}`, `]`, `)`, `else`, `elif`, `except`, `finally`, `catch`, ...).

Indentation is counted in columns with tabs expanded to TAB_WIDTH (Copilot's `next_indent` counts
columns too). The cut also drops the blank lines in front of the line that ends the block, so a
trimmed completion ends with the block's last non-blank line and no trailing newline.
"""

from __future__ import annotations

TAB_WIDTH = 4

# Lines that sit at the block's own indentation but still belong to it.
CONTINUATION_PREFIXES = ("}", "]", ")")
CONTINUATION_WORDS = (
    "else",
    "elif",
    "except",
    "finally",
    "catch",
    "end",
    "fi",
    "done",
    "esac",
    "until",
    "rescue",
    "ensure",
)


def indentation(line: str) -> int:
    """Columns of leading whitespace (tabs count to the next multiple of TAB_WIDTH)."""
    col = 0
    for ch in line:
        if ch == " ":
            col += 1
        elif ch == "\t":
            col += TAB_WIDTH - col % TAB_WIDTH
        else:
            break
    return col


def block_indent(prompt: str, next_indent: int | None = None) -> int:
    """The `c` of the rule: max(indentation of the last non-blank prompt line, next_indent)."""
    last = 0
    end = len(prompt)
    while end >= 0:  # walk back line by line: prompts can be megabytes, the answer is near the end
        start = prompt.rfind("\n", 0, end) + 1
        line = prompt[start:end]
        if line.strip():
            last = indentation(line)
            break
        end = start - 1
    return max(last, next_indent or 0)


def _continues(content: str, complete: bool) -> bool | None:
    """Does a line whose non-blank part starts with `content` continue the block?

    None: cannot tell yet (the line may still grow into a continuation word, or past one).
    """
    if content.startswith(CONTINUATION_PREFIXES):
        return True
    for word in CONTINUATION_WORDS:
        if content.startswith(word):
            rest = content[len(word) :]
            if rest:
                if not (rest[0].isalnum() or rest[0] == "_"):
                    return True
            elif complete:
                return True
            else:
                return None  # "else" might still become "elsewhere"
        elif not complete and word.startswith(content):
            return None  # "el" might still become "else"
    return False


def trim_point(text: str, c: int, complete: bool = False) -> tuple[int | None, int]:
    """Where a completion ends under the rule, as far as `text` tells.

    Returns (cut, safe): `cut` is the offset to cut the completion at (text[:cut] is the answer),
    or None when the block has not ended yet; `safe` is how much of `text` may be sent to the
    client now without risk of sending text that a later cut would remove. `complete` says
    that `text` is final (generation has ended), so an unfinished last line is judged as is.
    """
    first_nl = text.find("\n")
    if first_nl < 0:
        return None, len(text)
    safe = first_nl  # the end of the last non-blank line so far (the first line always counts)
    pos = first_nl + 1
    while pos <= len(text):
        nl = text.find("\n", pos)
        last_line = nl < 0
        line = text[pos:] if last_line else text[pos:nl]
        content = line.lstrip(" \t")
        line_done = complete or not last_line
        if not content:
            # Blank (or only whitespace so far): undecided, hold it back.
            if last_line:
                return None, (len(text) if complete else safe)
            pos = nl + 1
            continue
        indent = indentation(line)
        if indent < c:
            return safe, safe
        if indent == c:
            verdict = _continues(content, line_done)
            if verdict is None:
                return None, safe
            if not verdict:
                return safe, safe
        # The line belongs to the block.
        if last_line:
            return None, len(text)
        safe = nl
        pos = nl + 1
    return None, safe

"""Copilot's trim_by_indentation rule (PROTOCOLS.md), as pure text functions."""

from __future__ import annotations

import pytest

from codecomplete.engine.indent import block_indent, indentation, trim_point


def test_indentation_counts_columns():
    assert indentation("x") == 0
    assert indentation("    x") == 4
    assert indentation("\tx") == 4
    assert indentation("  \tx") == 4
    assert indentation("") == 0


@pytest.mark.parametrize(
    ("prompt", "next_indent", "c"),
    [
        ("def f():\n", None, 0),  # cursor on a fresh line after the opener: c from the opener
        ("def f():\n", 4, 4),  # Copilot says the next line is indented: the larger wins
        ("def f():\n    x = 1\n    ", None, 4),  # trailing blank line ignored
        ("class A:\n    def f(self):\n        return 1\n\n\n", 0, 8),
        ("", None, 0),
        ("\n\n   \n", 2, 2),
    ],
)
def test_block_indent(prompt, next_indent, c):
    assert block_indent(prompt, next_indent) == c


def _final(text: str, c: int) -> str:
    cut, _ = trim_point(text, c, complete=True)
    return text if cut is None else text[:cut]


def test_cut_at_dedent_drops_blank_lines_in_front():
    text = "\n    return a + b\n\ndef g():\n    pass\n"
    assert _final(text, 0) == "\n    return a + b"


def test_line_at_block_indent_ends_the_block_unless_it_continues_it():
    # Prompt "def f():\n    " with next_indent 4: c = 4. The first line completes the cursor's line;
    # `else:` continues the if-block, `w()` at the same indentation ends it.
    body = "if x:\n        y()\n    else:\n        z()\n    w()\n"
    assert _final(body, 4) == "if x:\n        y()\n    else:\n        z()"
    js = " {\n  a();\n}\nfoo();\n"
    assert _final(js, 0) == " {\n  a();\n}"
    assert _final("try:\n        a()\n    except E:\n        b()\n    c()", 4).endswith("b()")


def test_word_boundary_for_continuation_words():
    assert _final("\n  a\nelsewhere()\n", 0) == "\n  a"
    assert _final("\n  a\nelse_ = 1\n", 0) == "\n  a"
    assert _final("\n  a\nelse:\n  b\n", 0) == "\n  a\nelse:\n  b\n"


def test_first_line_is_never_judged():
    assert _final("x = 1\ny = 2\n", 4) == "x = 1"
    assert trim_point("anything at all", 8) == (None, len("anything at all"))


def test_below_c_cuts_even_a_continuation_word():
    assert _final("x\n        a()\n  else:\n", 4) == "x\n        a()"


def test_streaming_holds_back_only_what_a_cut_could_remove():
    # The newline after a body line is held back until the next line shows whether it is cut.
    assert trim_point("\n    a()\n", 0) == (None, len("\n    a()"))
    # Leading whitespace of an unfinished line is held back.
    assert trim_point("\n    a()\n  ", 0) == (None, len("\n    a()"))
    # "el" may still become "else": undecided, hold it back.
    assert trim_point("\n    a()\nel", 0) == (None, len("\n    a()"))
    # "else" might still become "elsewhere".
    assert trim_point("\n    a()\nelse", 0) == (None, len("\n    a()"))
    assert trim_point("\n    a()\nelse:", 0) == (None, len("\n    a()\nelse:"))
    # A decided dedent: cut now.
    assert trim_point("\n    a()\n\nx", 0) == (len("\n    a()"), len("\n    a()"))
    # Deeper lines are sent as they come.
    text = "\n    a()\n    b"
    assert trim_point(text, 0) == (None, len(text))


def test_complete_text_keeps_everything_when_the_block_did_not_end():
    text = "\n    a()\n    b()\n"
    assert trim_point(text, 0, complete=True) == (None, len(text))

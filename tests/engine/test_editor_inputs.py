"""Issue 13's engine-side pieces, torch-free: a whitespace-only suffix is left-to-right, and
trim_by_indentation stops a sequence as soon as its block has ended."""

from __future__ import annotations

import pytest

from codecomplete.engine.inputs import prepare_prompt
from codecomplete.engine.stopping import StopChecker
from codecomplete.engine.types import GenerationRequest, SamplingParams

PROMPT = "# Path: app.py\ndef main():\n    "


def prepared(core, suffix):
    request = GenerationRequest("r", SamplingParams(max_tokens=8), prompt=PROMPT, suffix=suffix)
    return prepare_prompt(request, core.tokenizer, core.spec)


@pytest.mark.parametrize("suffix", ["", "\n", "  \n\t\n", None])
def test_no_text_after_the_cursor_is_left_to_right(gpt2_core, suffix):
    # Copilot always sends `suffix`, "" when nothing follows the cursor: FIM on it made the
    # bundled model end at once (every choice empty).
    p = prepared(gpt2_core, suffix)
    assert not p.fim
    assert p.token_ids == prepared(gpt2_core, None).token_ids


def test_text_after_the_cursor_is_fim(gpt2_core):
    p = prepared(gpt2_core, "\n\nif __name__ == '__main__':\n    main()\n")
    assert p.fim and p.token_ids[0] == gpt2_core.tokenizer.get_vocab()["<fim_prefix>"]


def test_indent_trim_stops_at_the_first_character_of_the_line_that_ends_the_block():
    # The prompt ended "def main():\n" (c = 0): lines indented deeper belong to the body.
    checker = StopChecker([], indent_trim=0)
    steps = ["    x = 1\n", "    y = 2\n", "\n", "p"]  # "p" at column 0: the block has ended
    results = []
    text = ""
    for piece in steps:
        text += piece
        results.append(checker.check(text))
    assert [stopped for _, stopped in results] == [False, False, False, True]
    assert text[: results[-1][0]] == "    x = 1\n    y = 2"  # nothing generated past the block is kept

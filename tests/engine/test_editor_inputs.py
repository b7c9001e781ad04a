"""Issue 13's engine-side pieces, torch-free: a whitespace-only suffix is left-to-right, and
trim_by_indentation stops a sequence as soon as its block has ended."""

from __future__ import annotations

import pytest

from codecomplete.engine.inputs import prepare_prompt, truncation_step
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


@pytest.mark.parametrize("suffix", [None, "\n\nif __name__ == '__main__':\n    main()\n" * 40])
def test_a_growing_prompt_past_the_context_keeps_its_window_start(gpt2_core, suffix):
    """Typing at the end of a prompt longer than the context: the window's first tokens move only
    when a truncation step's worth has been typed (prefix reuse across keystrokes), and the window
    fills the room to within one step."""
    tok, spec = gpt2_core.tokenizer, gpt2_core.spec
    ctx = spec.context_length
    step = truncation_step(ctx)
    body = "".join(f"value_{i} = compute({i})\n" for i in range(200))
    typed = "result = compute_all(values, key=lambda item: item[1])"
    starts, lengths = [], []
    for n in range(0, len(typed) + 1, 3):  # a few characters per keystroke
        prompt = body + typed[:n]
        request = GenerationRequest("r", SamplingParams(max_tokens=16), prompt=prompt, suffix=suffix)
        p = prepare_prompt(request, tok, spec)
        assert p.truncated and len(p.token_ids) <= ctx - 16
        prefix = p.token_ids[1 : p.token_ids.index(tok.get_vocab()["<fim_suffix>"])] if p.fim else p.token_ids
        starts.append(tuple(prefix[:8]))
        lengths.append(len(prefix))
    grown = len(tok(body + typed)["input_ids"]) - len(tok(body)["input_ids"])
    assert grown > step  # the typing crosses a step boundary at least once
    # A new window start only where a step boundary is crossed (cutting exactly the excess gave
    # every keystroke its own).
    assert len(set(starts)) <= grown // step + 2
    assert len(set(starts)) < len(starts) // 2
    room = max(lengths)
    assert all(room - step < n <= room for n in lengths)

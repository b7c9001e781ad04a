"""Issue 13's engine-side pieces, torch-free: a whitespace-only suffix is left-to-right, and
trim_by_indentation stops a sequence as soon as its block has ended; prompts longer than the
context (issue 12): stepped windows, and whole documents not tokenised past what can be fed."""

from __future__ import annotations

import pytest

from codecomplete.engine.inputs import CHARS_PER_TOKEN, prepare_prompt, truncation_step
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


class RecordingTokenizer:
    """The model's tokenizer, recording the length of every text it is asked to tokenise."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.lengths: list[int] = []

    def __call__(self, text, **kwargs):
        self.lengths.append(len(text))
        return self.tokenizer(text, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


@pytest.mark.parametrize("fim", [False, True])
def test_a_whole_document_is_tokenised_only_as_far_as_the_context_can_reach(gpt2_core, fim):
    """Editors send whole files (Copilot the full prefix and suffix): tokenising all of a big one
    stalled the engine's loop for every running stream (~70 ms per 100 KB). The text is cut
    first, and the model is fed the same tokens as from the whole document, nearest the cursor."""
    tok, spec = gpt2_core.tokenizer, gpt2_core.spec
    ctx = spec.context_length
    prefix = "".join(f"value_{i} = compute({i}, key='k{i}')\n" for i in range(8000))  # ~300 KB
    suffix = "".join(f"check(value_{i})\n" for i in range(8000)) if fim else None
    recording = RecordingTokenizer(tok)
    request = GenerationRequest("r", SamplingParams(max_tokens=16), prompt=prefix, suffix=suffix)
    p = prepare_prompt(request, recording, spec)
    assert p.truncated and p.fim == fim
    assert max(recording.lengths) <= ctx * CHARS_PER_TOKEN < len(prefix) // 10
    vocab = tok.get_vocab()
    if fim:
        cut = p.token_ids.index(vocab["<fim_suffix>"])
        fed_prefix = p.token_ids[1:cut]
        fed_suffix = p.token_ids[cut + 1 : p.token_ids.index(vocab["<fim_middle>"])]
        assert fed_suffix == tok(suffix, add_special_tokens=False)["input_ids"][: len(fed_suffix)]
    else:
        fed_prefix = p.token_ids
    whole = tok(prefix, add_special_tokens=False)["input_ids"]
    assert fed_prefix == whole[-len(fed_prefix) :]  # the end of the document, token for token
    room = ctx - 16 - (2 + len(fed_suffix) + 1 if fim else 0)  # max_tokens 16 are kept free
    assert room - truncation_step(ctx) < len(fed_prefix) <= room

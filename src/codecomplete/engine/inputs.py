"""Turn a GenerationRequest into the token ids fed to the model.

Fill-in-the-middle through the model's template (models/fim.py), left-truncation of prompts longer
than the context (keeping the end of the prefix, the start of the suffix, and cutting the start in
steps so that consecutive keystrokes keep one window and their prefix reuse), token healing of a
text prompt's last word (engine/healing.py) and max_tokens clamped to what fits. Pure Python over a
Hugging Face tokenizer: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from codecomplete.engine.healing import HealedTail, TokenHealer
from codecomplete.engine.types import EngineError, GenerationRequest
from codecomplete.models.registry import ModelSpec


@dataclass
class PreparedPrompt:
    token_ids: list[int]
    text: str  # the prompt as the client sees it (after truncation), for echo
    max_tokens: int
    fim: bool
    stop_token_ids: set[int]
    truncated: bool
    healed: HealedTail | None = None  # the prompt's tail removed by token healing (re-typed)
    room: int = 0  # tokens that fit the context after `token_ids`


class PromptError(ValueError):
    def __init__(self, error: EngineError):
        super().__init__(error.message)
        self.error = error


def _bad(message: str, param: str) -> PromptError:
    return PromptError(EngineError(message=message, type="invalid_request_error", param=param, status=400))


def generation_reserve(max_tokens: int, context_length: int) -> int:
    """Room kept for generation when a prompt must be truncated: what the client asked for, up to a
    quarter of the context (a Copilot prompt sized for a longer context still gets a useful answer)."""
    return max(1, min(max_tokens, context_length // 4))


def truncation_step(context_length: int) -> int:
    """A prompt longer than the context loses its start in multiples of this many tokens (1/16 of
    the context: 32 for a 512-token model, 256 for 4096).

    Cutting exactly what does not fit moves the window's first token with every token typed at the
    end, so an editor's next keystroke shares no prefix with the last one and re-reads its whole
    window: every keystroke in a file longer than the context paid a full prefill. With the cut
    rounded up to a step, keystrokes keep the same window (and the prefix cache's KV, here or in
    vLLM's prefix caching) until a step's worth has been typed, at the price of up to step - 1
    tokens of the oldest context. (llama.cpp's server answers such a prompt with an error, and its
    editor plugins size their prompts to fit.)"""
    return max(1, context_length // 16)


CHARS_PER_TOKEN = 16
"""A bound on the characters one token of a prompt covers, for `text_window` (source code averages
3-4 characters per token; runs of spaces and long identifiers make some tokens longer)."""


def text_window(text: str, context_length: int, from_start: bool = False) -> str:
    """The part of a prompt text (its end; `from_start`: its start, for a FIM suffix) that can
    still reach a context of `context_length` tokens, cut before tokenising.

    Editors send whole documents (Copilot the full prefix and suffix of the file), and tokenising
    100 KB of text took ~70 ms of the engine's loop, during which every running stream waits, to
    keep the last few hundred tokens. No prompt keeps more than `context_length` tokens, and those
    cover at most CHARS_PER_TOKEN characters each, so text beyond `context_length *
    CHARS_PER_TOKEN` characters from the cursor is never fed. The end is cut in steps of 1/16 of
    that (`truncation_step`'s share, counted from the text's first character as with tokens), so a
    keystroke at the end of a long file keeps the same first character, and with it the same token
    window, until a step's worth has been typed."""
    keep = context_length * CHARS_PER_TOKEN
    if len(text) <= keep:
        return text
    if from_start:
        return text[:keep]
    return text[_left_cut(len(text), keep, truncation_step(keep)) :]


def _left_cut(n: int, keep: int, step: int) -> int:
    """How many of `n` tokens to drop from the left so that at most `keep` remain: the excess
    rounded up to a multiple of `step` (counted from the prompt's first token, so the cut moves only
    when the prompt has grown by a step)."""
    if n <= keep:
        return 0
    return min(n, -(-(n - keep) // step) * step)


def prepare_prompt(
    request: GenerationRequest, tokenizer, spec: ModelSpec, healer: TokenHealer | None = None
) -> PreparedPrompt:
    """`healer`: heal the end of a text prompt (the caller passes it when healing is on for this
    request). Never for token-id prompts (the client chose those tokens), FIM prompts (FIM training
    tokenises the middle on its own, so a middle that starts mid-word is what the model saw) or
    max_tokens 0 (scoring: nothing is generated to re-type the tail)."""
    params = request.params
    ctx = spec.context_length
    if params.max_tokens < 0:
        raise _bad("max_tokens must be >= 0", "max_tokens")

    if request.prompt_token_ids is not None:
        ids = list(request.prompt_token_ids)
        bad = [t for t in ids if not (0 <= t < spec.vocab_size)]
        if bad:
            raise _bad(f"token id {bad[0]} is out of the vocabulary (0..{spec.vocab_size - 1})", "prompt")
        prefix_ids, specials = ids, []
        prompt_text = None
        truncated = False
    else:
        prompt_text = request.prompt or ""
        window = text_window(prompt_text, ctx)
        truncated = len(window) < len(prompt_text)
        prefix_ids = tokenizer(window, add_special_tokens=False)["input_ids"]
        specials = list(spec.prompt_prefix_ids)

    # A suffix of only whitespace is no middle to fill: Copilot always sends `suffix`, "" (or a
    # lone newline) when nothing follows the cursor, and FIM on it made the bundled model end at
    # once (every choice '') where left-to-right completion writes the code (issue 13).
    wants_fim = request.fim if request.fim is not None else (request.suffix or "").strip() != ""
    use_fim = request.suffix is not None and wants_fim and spec.fim is not None
    reserve = generation_reserve(params.max_tokens, ctx)
    budget = max(1, ctx - reserve)
    step = truncation_step(ctx)
    stop_ids = set() if params.ignore_eos else set(spec.eos_token_ids)

    if use_fim:
        suffix_ids = tokenizer(text_window(request.suffix, ctx, from_start=True), add_special_tokens=False)[
            "input_ids"
        ]
        n_special = len(spec.fim.encode([], [], lambda t: 0)) + len(specials)
        room = max(2, budget - n_special)
        if len(prefix_ids) + len(suffix_ids) > room:
            truncated = True
            keep_suffix = min(len(suffix_ids), max(room // 4, room - len(prefix_ids)))
            suffix_ids = suffix_ids[:keep_suffix]  # the start of the suffix: nearest the cursor
            prefix_ids = prefix_ids[_left_cut(len(prefix_ids), max(0, room - keep_suffix), step) :]
        vocab = tokenizer.get_vocab()
        ids = specials + spec.fim.encode(prefix_ids, suffix_ids, vocab.__getitem__)
        if not params.ignore_eos:
            stop_ids |= set(spec.fim_end_token_ids)
    else:
        room = max(1, budget - len(specials))
        if len(prefix_ids) > room:
            truncated = True
            prefix_ids = prefix_ids[_left_cut(len(prefix_ids), room, step) :]  # the end: nearest the cursor
        ids = specials + list(prefix_ids)
        if not ids:
            if spec.bos_token_id is None:
                raise _bad("the prompt is empty and the model has no BOS token to start from", "prompt")
            ids = [spec.bos_token_id]

    if truncated or prompt_text is None:
        text = tokenizer.decode(prefix_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    else:
        text = prompt_text
    healed = None
    if healer is not None and prompt_text is not None and not use_fim and params.max_tokens > 0:
        kept, healed = healer.heal(list(prefix_ids))
        if healed is not None:
            ids = specials + kept  # `text` stays the client's prompt: echo returns it as sent
    room = max(0, ctx - len(ids))
    return PreparedPrompt(
        token_ids=ids,
        text=text,
        max_tokens=min(params.max_tokens, room),
        fim=use_fim,
        stop_token_ids=stop_ids,
        truncated=truncated,
        healed=healed,
        room=room,
    )

"""What every backend that generates somewhere else (vLLM in-process, an OpenAI-compatible upstream)
shares with the local engine, torch-free.

- `load_prompt_model`: the model's tokenizer and ModelSpec from `--model` (AutoConfig and
  AutoTokenizer only: no weights, no torch), so `engine.inputs.prepare_prompt` builds the very
  prompt the local engine would (context length, FIM template, truncation, generation reserve).
- `ChoiceTracker`: our side of a choice's text: stop strings, Copilot's trim-by-indentation and the
  deadline (engine/stopping.py), applied to the text deltas a remote engine sends, with the
  choice's logprob entries released together with the text they belong to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from codecomplete.engine.stopping import StopChecker, last_line_boundary
from codecomplete.engine.types import ChoiceDelta, FinishReason, SamplingParams, TokenLogprob
from codecomplete.models.registry import ModelSpec


@dataclass
class PromptModel:
    """What a remote backend needs of the model to build prompts: no weights."""

    tokenizer: object
    spec: ModelSpec

    @property
    def fim_name(self) -> str | None:
        return self.spec.fim.name if self.spec.fim else None

    def prompt_text(self, token_ids: list[int]) -> str:
        """The prepared prompt as text for an upstream that tokenises it again: the tokenizer's own
        prefix (BOS) dropped, since the upstream adds it; FIM tokens written out as their strings
        (Hugging Face tokenizers, vLLM's included, split special tokens out of text again)."""
        skip = len(self.spec.prompt_prefix_ids)
        if token_ids[:skip] != list(self.spec.prompt_prefix_ids):
            skip = 0
        return self.tokenizer.decode(
            token_ids[skip:], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )


def load_prompt_model(model: str, fim_template: str | None = None) -> PromptModel:
    """Tokenizer + ModelSpec of a local model folder (or a hub id already in the cache)."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    return PromptModel(tokenizer=tokenizer, spec=ModelSpec.from_pretrained(config, tokenizer, fim_template))


def token_offsets(tokens: list[str], start: int) -> list[int]:
    """Where each token's text starts, counting from `start`."""
    out, pos = [], start
    for t in tokens:
        out.append(pos)
        pos += len(t)
    return out


@dataclass
class ChoiceTracker:
    """One choice's text on our side of a remote engine.

    `add(text, ...)` takes the next delta (and the remote finish reason, if it ended); it returns
    the ChoiceDelta to send (None when there is nothing new). Text that could still become a stop
    string, or a line that could still end the indentation block, is held back exactly as in the
    local engine; the choice ends at most once.
    """

    index: int
    params: SamplingParams
    text: str = ""
    sent: int = 0
    finished: bool = False
    finish_reason: FinishReason | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    lp_sent: int = 0
    pending_ids: list[int] = field(default_factory=list)
    tokens: int = 0  # tokens received (for usage when the remote reports none)
    stopper: StopChecker = field(init=False)

    def __post_init__(self) -> None:
        self.stopper = StopChecker(self.params.stop, self.params.indent_trim)

    def add(
        self,
        text: str,
        *,
        logprobs: list[TokenLogprob] | None = None,
        token_ids: list[int] | None = None,
        finish_reason: str | None = None,
    ) -> ChoiceDelta | None:
        if self.finished:
            return None
        if logprobs:
            offsets = token_offsets([e.token for e in logprobs], len(self.text))
            for entry, offset in zip(logprobs, offsets, strict=True):
                entry.text_offset = offset
            self.logprobs.extend(logprobs)
        self.pending_ids.extend(token_ids or [])
        self.tokens += len(token_ids) if token_ids else len(logprobs or []) or (1 if text else 0)
        self.text += text
        final = finish_reason is not None
        safe, stopped = self.stopper.check(self.text, final=final)
        if stopped:
            self.text = self.text[: max(safe, self.sent)]
            return self._emit(len(self.text), "stop")
        if final:
            return self._emit(len(self.text), "stop" if finish_reason == "stop" else "length")
        return self._emit(max(self.sent, safe), None)

    def expire(self) -> ChoiceDelta | None:
        """The request's deadline passed: end at the last line boundary, finish_reason "length"."""
        if self.finished:
            return None
        self.text = self.text[: max(self.sent, last_line_boundary(self.text))]
        safe, stopped = self.stopper.check(self.text, final=True)
        if stopped:
            self.text = self.text[: max(safe, self.sent)]
        return self._emit(len(self.text), "stop" if stopped else "length")

    def _emit(self, upto: int, reason: FinishReason | None) -> ChoiceDelta | None:
        piece = self.text[self.sent : upto]
        if reason is not None:
            self.finished, self.finish_reason = True, reason
        lps = None
        if self.params.logprobs is not None:
            end = self.lp_sent
            while end < len(self.logprobs) and (
                self.logprobs[end].text_offset < upto
                or (
                    reason is not None
                    and self.logprobs[end].text_offset + len(self.logprobs[end].token) <= upto
                )
            ):
                end += 1
            lps, self.lp_sent = self.logprobs[self.lp_sent : end], end
        if not piece and reason is None and not lps:
            return None
        self.sent = upto
        ids, self.pending_ids = self.pending_ids, []
        return ChoiceDelta(index=self.index, text=piece, token_ids=ids, logprobs=lps, finish_reason=reason)


class Deadline:
    """A request's time budget (SamplingParams.deadline_s) from the moment the backend got it."""

    def __init__(self, budget_s: float | None):
        self.at = None if budget_s is None else time.monotonic() + budget_s

    def left(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

"""`"debug": true` on a completion request: what the model actually saw, and how long it took.

For the playground (and anyone asking "what context was sent to the model?"). Everything here
comes from the engine's first `RequestOutput` of each prompt (`prompt_token_ids`: the ids fed to the
model, FIM template and token healing applied; `prompt_text`: the client's prompt after truncation)
and from clocks at the API edge; the engine is not asked anything new. The ids are turned back into
text with the model's own `tokenizer.json` (the `tokenizers` library, no torch) when the server
was started on a local model folder; otherwise only the ids are shown.

The prefix-cache numbers are the change of the engine's server-wide counters while the request
ran: exact when it is the only request, an upper bound when others run at the same time.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

log = logging.getLogger("codecomplete.api")

# Engine counters read before and after a debug request (engine/core.py `metrics()`).
CACHE_HITS = "prefix_cache_hits_total"
CACHE_TOKENS = "prefix_cache_tokens_reused_total"
# Token healing drops at most a few characters of the prompt's last word (--token-healing-max-chars).
MAX_HEALED_CHARS = 64


class PromptDebug(BaseModel):
    index: int = Field(description="Which prompt of the request")
    prompt_text: str | None = Field(
        None, description="The prompt as the engine kept it (the start is cut when it was too long)"
    )
    prompt_token_ids: list[int] = Field(
        default_factory=list,
        description="The token ids fed to the model: FIM template and token healing applied",
    )
    num_prompt_tokens: int = 0
    model_prompt: str | None = Field(
        None,
        description="`prompt_token_ids` decoded: the exact text the model saw (null without a tokenizer)",
    )
    prompt_tokens: list[str] | None = Field(None, description="One decoded piece per prompt token")
    fim: bool = Field(False, description="The prompt went through the model's fill-in-the-middle template")
    fim_template: str | None = None
    truncated: bool = Field(False, description="Part of the prompt or suffix did not fit the context")
    healed_tail: str | None = Field(
        None, description="Token healing: the end of the prompt removed and left for the model to re-type"
    )


class CompletionDebug(BaseModel):
    prompts: list[PromptDebug] = Field(default_factory=list)
    ttft_s: float | None = Field(None, description="Arrival of the request to its first generated text")
    duration_s: float = Field(0.0, description="Arrival of the request to its last output")
    completion_tokens: int = 0
    tokens_per_s: float | None = Field(
        None, description="Generated tokens per second after the first one (decode speed)"
    )
    prefix_cache_hits: int | None = Field(
        None, description="Prefix-cache hits while the request ran (server-wide counter delta)"
    )
    prefix_cache_tokens_reused: int | None = Field(
        None, description="Prompt tokens taken from the prefix cache while the request ran"
    )


class PromptDecoder:
    """Token ids back to text with the model folder's tokenizer.json, loaded on first use."""

    def __init__(self, tokenizer_file: Path | None):
        self.tokenizer_file = tokenizer_file

    @classmethod
    def from_model(cls, model: str | Path) -> PromptDecoder:
        path = Path(model) / "tokenizer.json"
        return cls(path if path.is_file() else None)

    @cached_property
    def _tokenizer(self) -> Any:
        if self.tokenizer_file is None:
            return None
        try:
            from tokenizers import Tokenizer

            return Tokenizer.from_file(str(self.tokenizer_file))
        except Exception as exc:  # a tokenizer.json the library cannot read: show ids only
            log.warning("debug: cannot load %s: %s", self.tokenizer_file, exc)
            return None

    def decode(self, ids: list[int]) -> tuple[str, list[str]] | None:
        tok = self._tokenizer
        if tok is None:
            return None
        return tok.decode(ids, skip_special_tokens=False), [
            tok.decode([i], skip_special_tokens=False) for i in ids
        ]


def cache_counters(metrics: dict[str, float]) -> tuple[int, int] | None:
    if CACHE_HITS not in metrics or CACHE_TOKENS not in metrics:
        return None
    return int(metrics[CACHE_HITS]), int(metrics[CACHE_TOKENS])


def healed_tail(model_prompt: str, prompt_text: str) -> str | None:
    """The end of `prompt_text` missing from the decoded model prompt (token healing), if any."""
    if not prompt_text or model_prompt.endswith(prompt_text):
        return None
    for cut in range(1, min(MAX_HEALED_CHARS, len(prompt_text)) + 1):
        if model_prompt.endswith(prompt_text[:-cut]):
            return prompt_text[-cut:]
    return None


def prompt_debug(
    index: int,
    sent: str | list[int],
    suffix: str | None,
    fim_template: str | None,
    prompt_text: str | None,
    prompt_token_ids: list[int] | None,
    decoder: PromptDecoder | None,
) -> PromptDebug:
    ids = list(prompt_token_ids or [])
    # The engine's rule (engine/inputs.py): an empty or whitespace-only suffix is left-to-right.
    fim = suffix is not None and suffix.strip() != "" and fim_template is not None
    out = PromptDebug(
        index=index,
        prompt_text=prompt_text,
        prompt_token_ids=ids,
        num_prompt_tokens=len(ids),
        fim=fim,
        fim_template=fim_template if fim else None,
        truncated=isinstance(sent, str) and prompt_text is not None and prompt_text != sent,
    )
    decoded = decoder.decode(ids) if decoder is not None and ids else None
    if decoded is not None:
        out.model_prompt, out.prompt_tokens = decoded
        if fim and suffix and suffix not in out.model_prompt:
            out.truncated = True  # the end of the suffix was cut
        if not fim and isinstance(sent, str) and prompt_text is not None:
            out.healed_tail = healed_tail(out.model_prompt, prompt_text)
    return out

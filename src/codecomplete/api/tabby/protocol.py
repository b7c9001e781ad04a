"""Tabby's completion API (POST /v1/completions with `segments`), its /v1/health and /v1/events,
as Tabby's IDE plugins (tabby-agent) send them.

Spec: TabbyML/tabby crates/tabby/src/services/completion.rs (CompletionRequest, Segments) and
crates/tabby-common/src/api/event.rs (LogEventRequest); the agent's request:
clients/tabby-agent/src/codeCompletion/buildRequest.ts. What each field does here: docs/api.md.

A Tabby body shares its path with OpenAI's legacy completions: it is told apart by having
`segments` and no `prompt` (api/completions/router.py). Bad bodies are a 400 with a plain-text
message, as Tabby's server (axum) answers them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from codecomplete.api.completions.protocol import MAX_SEED, check_text
from codecomplete.engine.types import MIN_TEMPERATURE, SamplingParams
from codecomplete.models.fim import ContextChunk

# Tabby's server defaults: max_decoding_tokens 64, sampling temperature 0.1, and at most 768
# characters of snippets in the prompt (declarations first, then recently changed, then recently
# opened files).
MAX_DECODING_TOKENS = 64
DEFAULT_TEMPERATURE = 0.1
MAX_SNIPPET_CHARS = 768


def is_tabby_body(obj: dict[str, Any]) -> bool:
    return "segments" in obj and "prompt" not in obj


def _valid_text(value: str | None, info) -> str | None:
    # A lone surrogate (a JSON "\ud800") would make the tokenizer raise: a 500.
    return None if value is None else check_text(value, info.field_name)


class Declaration(BaseModel):
    model_config = ConfigDict(extra="ignore")

    filepath: str
    body: str

    _check = field_validator("filepath", "body")(_valid_text)


class Snippet(BaseModel):
    model_config = ConfigDict(extra="ignore")

    filepath: str
    body: str
    score: float = 1.0

    _check = field_validator("filepath", "body")(_valid_text)


class Segments(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prefix: str
    suffix: str | None = None
    filepath: str | None = None
    git_url: str | None = None
    declarations: list[Declaration] | None = None
    relevant_snippets_from_changed_files: list[Snippet] | None = None
    relevant_snippets_from_recently_opened_files: list[Snippet] | None = None
    clipboard: str | None = None  # accepted; Tabby's server does not put it in the prompt either
    edit_history: Any = None  # next-edit mode only (refused)

    _check = field_validator("prefix", "suffix", "filepath")(_valid_text)

    def chunks(self) -> list[ContextChunk]:
        """The snippets Tabby's server would put in the prompt, in its order and budget."""
        out: list[ContextChunk] = []
        used = 0
        groups: list[list[Any]] = [
            self.declarations or [],
            self.relevant_snippets_from_changed_files or [],
            self.relevant_snippets_from_recently_opened_files or [],
        ]
        for group in groups:
            for item in group:
                if used + len(item.body) > MAX_SNIPPET_CHARS:
                    break
                used += len(item.body)
                out.append(ContextChunk(item.filepath, item.body))
        return out


class DebugOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    raw_prompt: str | None = None
    return_snippets: bool = False
    return_prompt: bool = False
    disable_retrieval_augmented_code_completion: bool = False

    _check = field_validator("raw_prompt")(_valid_text)


class TabbyCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    language: str | None = None
    segments: Segments | None = None
    user: str | None = None
    debug_options: DebugOptions | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = None
    mode: str = "standard"

    def to_sampling_params(self) -> SamplingParams:
        t = DEFAULT_TEMPERATURE if self.temperature is None else self.temperature
        return SamplingParams(
            max_tokens=MAX_DECODING_TOKENS,
            temperature=0.0 if t < MIN_TEMPERATURE else t,
            seed=self.seed,
        )


class TabbyChoice(BaseModel):
    index: int
    text: str


class TabbyCompletionResponse(BaseModel):
    id: str
    choices: list[TabbyChoice]
    mode: str = "standard"
    debug_data: dict[str, Any] | None = None


EVENT_TYPES = ("view", "select", "dismiss")


class LogEventRequest(BaseModel):
    """POST /v1/events: what the editor did with a completion (the agent adds `?select_kind=line`
    when one line of it was accepted)."""

    model_config = ConfigDict(extra="ignore")

    type: str
    completion_id: str
    choice_index: Annotated[int, Field(ge=0)]
    view_id: str | None = None
    elapsed: Annotated[int, Field(ge=0)] | None = None

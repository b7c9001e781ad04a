"""Request and response models of the legacy completions API, in the spec's field order.

Spec: https://platform.openai.com/docs/api-reference/completions/create
Client contract: shared/PROTOCOLS.md (what Copilot, fauxpilot, openai 0.x/1.x actually send).

Limits (each a 400 naming the parameter; the comment says which 500 or stall it prevents):
- `prompt`: text, list of texts, token ids or lists of token ids, at most `max_choices` prompts;
  token ids must be in the vocabulary (checked in serving.py against the model: an embedding
  lookup out of range would crash the engine step, a 500 for every request in the batch);
- `max_tokens`: 0 only with `echo` (scoring), else 1..`max_tokens_limit`; values above the
  context are clamped by the engine, not rejected (Copilot sends 500 whatever the model);
- `temperature` 0..2 (below 1e-5 it is greedy: dividing by 1e-300 overflows the sampler), `top_p` 0..1, penalties -2..2, `logit_bias` values -100..100 (at most 300);
- `n` and `best_of` 1..`max_n`, `best_of` >= n and not above n with `stream`;
- `logprobs` 0..5; `stop` at most `max_stop` non-empty strings of at most 256 characters;
- text must be valid Unicode (a lone surrogate from a JSON `\\ud800` escape would make the
  tokenizer raise: a 500).
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from codecomplete.api.completions.debug import CompletionDebug
from codecomplete.api.errors import APIError
from codecomplete.engine.types import MIN_TEMPERATURE, SamplingParams

MAX_STOP_LENGTH = 256
MAX_LOGIT_BIAS = 300
MAX_SEED = 2**63 - 1
MAX_TOP_K = 2**31 - 1  # larger means "off" anyway; an unbounded int would reach torch.topk as int64
TOKEN_ID_KEY = re.compile(r"[0-9]{1,10}")

TokenIds = list[StrictInt]


def check_text(value: str, param: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{param} contains invalid Unicode (an unpaired surrogate)") from None
    return value


def check_stop_strings(stops: list[str]) -> list[str]:
    """Stop strings as every protocol accepts them: non-empty, at most MAX_STOP_LENGTH characters,
    valid Unicode."""
    for s in stops:
        if not s:
            raise ValueError("stop strings must not be empty")
        if len(s) > MAX_STOP_LENGTH:
            raise ValueError(f"stop strings must be at most {MAX_STOP_LENGTH} characters")
        check_text(s, "stop")
    return stops


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class CopilotExtra(BaseModel):
    """Copilot's `extra` object (it also sends fields we do not use; they are ignored)."""

    model_config = ConfigDict(extra="ignore")

    language: str | None = None
    next_indent: Annotated[int, Field(ge=0, le=10_000)] | None = None
    trim_by_indentation: bool = False
    prompt_tokens: int | None = None
    suffix_tokens: int | None = None
    force_indent: int | None = None


def _drop_nulls(data: Any, model: type[BaseModel]) -> Any:
    # `null` means "the default" for every field that has a non-null default: openai-python 0.x,
    # Copilot and hand-written clients send `"stream": null`, `"echo": null`, ...
    if isinstance(data, dict):
        fields = model.model_fields
        return {
            k: v
            for k, v in data.items()
            if not (
                v is None and k in fields and fields[k].default is not None and not fields[k].is_required()
            )
        }
    return data


class CompletionRequest(BaseModel):
    """POST /v1/completions (and the engine-in-path routes)."""

    # Unknown fields (Copilot's nwo, feature_flags) pass. The example is what /docs sends.
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "prompt": "def fibonacci(n):\n    ",
                    "suffix": "\n\nprint(fibonacci(10))\n",
                    "max_tokens": 32,
                    "temperature": 0.2,
                    "stop": ["\n\n"],
                }
            ]
        },
    )

    model: str | None = None
    prompt: str | list[str] | TokenIds | list[TokenIds] = ""
    best_of: Annotated[int, Field(ge=1)] | None = None
    echo: bool = False
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    max_tokens: Annotated[int, Field(ge=0)] | None = 16
    n: Annotated[int, Field(ge=1)] = 1
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    seed: Annotated[int, Field(ge=-MAX_SEED - 1, le=MAX_SEED)] | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    user: str | None = None

    # --- codecomplete / Copilot extras (not in the OpenAI spec) -----------------------------------
    extra: CopilotExtra | None = None
    top_k: Annotated[int, Field(ge=0, le=MAX_TOP_K)] = 0
    ignore_eos: bool = False
    token_healing: bool | None = None  # None: the server's --token-healing (docs/engine.md)
    # This request's time budget in ms (api/editor.py); 0: none; None: --completion-deadline-ms.
    deadline_ms: Annotated[int, Field(ge=0, le=3_600_000)] | None = None
    debug: bool = Field(
        False,
        description="Add `debug` to the response (the last chunk when streaming): the prompt as the "
        "model saw it (token ids and their text, FIM template, truncation, token healing), TTFT, "
        "tokens/s, prefix-cache reuse. For the playground.",
    )

    @model_validator(mode="before")
    @classmethod
    def _nulls_mean_default(cls, data: Any) -> Any:
        return _drop_nulls(data, cls)

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: Any) -> Any:
        if isinstance(value, str):
            return check_text(value, "prompt")
        if isinstance(value, list):
            if not value:
                raise ValueError("prompt must not be an empty list")
            for item in value:
                if isinstance(item, str):
                    check_text(item, "prompt")
                elif isinstance(item, list) and not item:
                    raise ValueError("a token-id prompt must not be empty")
            if isinstance(value[0], int) and any(t < 0 for t in value):
                raise ValueError("token ids must not be negative")
            if isinstance(value[0], list) and any(t < 0 for ids in value for t in ids):
                raise ValueError("token ids must not be negative")
        return value

    @field_validator("suffix")
    @classmethod
    def _check_suffix(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value, "suffix")

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> list[str]:
        return check_stop_strings([value] if isinstance(value, str) else list(value or []))

    @field_validator("logit_bias")
    @classmethod
    def _check_logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if len(value) > MAX_LOGIT_BIAS:
            raise ValueError(f"at most {MAX_LOGIT_BIAS} entries")
        for key in value:
            # ASCII digits only: "²" or "①" pass str.isdigit() but make int() raise (a 500), and a
            # 5,000-digit key would be slow to convert; the vocabulary check is in serving.py.
            if not TOKEN_ID_KEY.fullmatch(key.strip()):
                raise ValueError(f"keys must be token ids (non-negative integers), got {key[:20]!r}")
        return value

    def check_limits(self, *, max_n: int, max_choices: int, max_tokens_limit: int, max_stop: int) -> None:
        """The checks that need the server's limits or several fields; raise a 400 naming the field."""
        if self.n > max_n:
            raise APIError.invalid("n", f"n must be at most {max_n} (--max-n)")
        if self.best_of is not None:
            if self.best_of > max_n:
                raise APIError.invalid("best_of", f"best_of must be at most {max_n} (--max-n)")
            if self.best_of < self.n:
                raise APIError.invalid("best_of", "best_of must be at least n")
            if self.stream and self.best_of > self.n:
                raise APIError.invalid(
                    "best_of", "best_of > n cannot stream: the best choices are known only at the end"
                )
        choices = len(self.prompts()) * max(self.n, self.best_of or 0)
        if choices > max_choices:
            raise APIError.invalid(
                "n", f"prompts x n = {choices} choices; at most {max_choices} per request (--max-choices)"
            )
        if self.max_tokens is not None and self.max_tokens > max_tokens_limit:
            raise APIError.invalid(
                "max_tokens", f"max_tokens must be at most {max_tokens_limit} (--max-tokens-limit)"
            )
        if self.max_tokens == 0 and not self.echo:
            raise APIError.invalid(
                "max_tokens", "max_tokens must be at least 1 (0 only with echo, to score a prompt)"
            )
        if len(self.stop or []) > max_stop:
            raise APIError.invalid("stop", f"at most {max_stop} stop strings (--max-stop)")

    # --- derived ---------------------------------------------------------------------------------

    def prompts(self) -> list[str] | list[list[int]]:
        """The prompts as a list: texts or token-id lists."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and isinstance(p[0], int):
            return [list(p)]  # type: ignore[list-item]
        return list(p)  # type: ignore[arg-type]

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def to_sampling_params(
        self, indent_trim: int | None = None, deadline_s: float | None = None, priority: int = 0
    ) -> SamplingParams:
        return SamplingParams(
            max_tokens=self.max_tokens if self.max_tokens is not None else 2**31 - 1,
            # A temperature this small is greedy (as OpenAI treats 0): sampling at 1e-300 overflows.
            temperature=0.0 if self.temperature < MIN_TEMPERATURE else float(self.temperature),
            top_p=float(self.top_p),
            top_k=self.top_k,
            n=self.n,
            best_of=self.best_of,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            logit_bias={int(k): float(v) for k, v in (self.logit_bias or {}).items()},
            seed=self.seed,
            stop=list(self.stop or []),
            logprobs=self.logprobs,
            echo=self.echo,
            ignore_eos=self.ignore_eos,
            indent_trim=indent_trim,
            token_healing=self.token_healing,
            deadline_s=deadline_s,
            priority=priority,
        )


# --- responses -----------------------------------------------------------------------------------


class CompletionLogprobs(BaseModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    # --- codecomplete extra: only with `"debug": true` in the request ------------------------------
    debug: CompletionDebug | None = None

"""Ollama's API: POST /api/generate and the model listing routes, as Continue, Twinny, Cody and the
`ollama` Python and JS packages use them.

Spec: https://github.com/ollama/ollama/blob/main/docs/api.md. What each client sends: docs/api.md.

Limits (each a 400 with Ollama's {"error": "..."}; the comment says which failure it prevents):
- `options.num_predict` -1/-2 (until the context is full) or 0..--max-tokens-limit;
- `options.temperature` 0..2, `top_p` 0..1, `top_k` >= 0, penalties -2..2 (a huge temperature
  overflows the sampler); `stop` at most --max-stop non-empty strings;
- texts must be valid Unicode (a lone surrogate makes the tokenizer raise: a 500);
- what this server cannot do is refused by name rather than ignored: `images`, `format` (JSON
  mode / schemas), a `template` other than the plain `{{ .Prompt }}`, `context`.
Other `options` (num_ctx, repeat_penalty, min_p, num_thread, ...) are accepted and ignored, as
Ollama itself ignores options a model does not use.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from codecomplete.api.completions.protocol import MAX_SEED, check_stop_strings, check_text
from codecomplete.api.errors import APIError
from codecomplete.engine.types import MIN_TEMPERATURE, SamplingParams
from codecomplete.models import fim

# The template every model here has: the prompt as is (base code models, no chat template), and
# with a suffix the family's FIM layout.
PLAIN_TEMPLATE = "{{ .Prompt }}"
_PLAIN = re.compile(r"\{\{-?\s*\.Prompt\s*-?\}\}")


def model_template(fim_template: str | None) -> str:
    """The model's template in Ollama's Go-template syntax, as /api/show reports it. Continue uses
    FIM with an Ollama model only when this mentions `.Suffix`."""
    if fim_template is None:
        return PLAIN_TEMPLATE
    layout = fim.from_name(fim_template).render("{{ .Prompt }}", "{{ .Suffix }}")
    return f"{{{{- if .Suffix }}}}{layout}{{{{- else }}}}{{{{ .Prompt }}}}{{{{- end }}}}"


class Options(BaseModel):
    """`options`: the model parameters a request may override."""

    model_config = ConfigDict(extra="ignore")

    num_predict: Annotated[int, Field(ge=-2)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    stop: list[str] | None = None
    seed: Annotated[int, Field(ge=-MAX_SEED - 1, le=MAX_SEED)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_stop_strings(value)


class GenerateRequest(BaseModel):
    """POST /api/generate, in the spec's field order."""

    model_config = ConfigDict(extra="ignore")

    model: str = ""
    prompt: str = ""
    # Text after the cursor: fill-in-the-middle (also with `raw`, where Ollama would drop it).
    suffix: str = ""
    images: list[Any] | None = None
    format: Any = None
    options: Options | None = None
    system: str | None = None  # no template here reads it (as Ollama with a `{{ .Prompt }}` model)
    template: str | None = None
    context: list[int] | None = None
    stream: bool = True  # Ollama streams unless told not to
    raw: bool = False  # the prompt goes as is either way: the models here have no prompt template
    keep_alive: Any = None  # the model stays loaded for the server's life
    think: Any = None

    @field_validator("prompt", "suffix", "model")
    @classmethod
    def _valid_text(cls, value: str, info) -> str:
        return check_text(value, info.field_name)

    @field_validator("stream", "raw", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info) -> Any:
        # null means the default (as for every field on the OpenAI routes).
        return cls.model_fields[info.field_name].default if value is None else value

    def check(self, *, max_tokens_limit: int, max_stop: int, fim_template: str | None) -> None:
        """Refuse what this server cannot honour, by name (never a silent difference)."""
        if self.images:
            raise APIError.invalid("images", "this model does not support images")
        if self.format not in (None, ""):
            raise APIError.invalid("format", "structured output (`format`) is not supported by this server")
        if self.template and not (
            _PLAIN.fullmatch(self.template.strip()) or self.template == model_template(fim_template)
        ):
            raise APIError.invalid(
                "template", f"only the model's own template (/api/show) or {PLAIN_TEMPLATE} is supported"
            )
        if self.context:
            raise APIError.invalid("context", "`context` (deprecated in Ollama) is not supported")
        if self.think not in (None, False):
            raise APIError.invalid("think", "this model does not support thinking")
        o = self.options or Options()
        if o.num_predict is not None and o.num_predict > max_tokens_limit:
            raise APIError.invalid(
                "options.num_predict", f"num_predict must be at most {max_tokens_limit} (--max-tokens-limit)"
            )
        if len(o.stop or []) > max_stop:
            raise APIError.invalid("options.stop", f"at most {max_stop} stop strings (--max-stop)")

    def is_load_only(self) -> bool:
        """Ollama loads the model and answers `done_reason: "load"` for an empty prompt."""
        return not self.prompt and not self.suffix

    def to_sampling_params(self, context_length: int) -> SamplingParams:
        """Ollama's defaults where `options` says nothing: temperature 0.8, top_k 40, top_p 0.9,
        num_predict -1 (until the context is full)."""
        o = self.options or Options()
        temperature = 0.8 if o.temperature is None else o.temperature
        num_predict = -1 if o.num_predict is None else o.num_predict
        return SamplingParams(
            max_tokens=num_predict if num_predict >= 0 else context_length,
            temperature=0.0 if temperature < MIN_TEMPERATURE else temperature,
            top_p=0.9 if o.top_p is None else o.top_p,
            top_k=40 if o.top_k is None else o.top_k,
            seed=o.seed,
            stop=list(o.stop or []),
            presence_penalty=o.presence_penalty or 0.0,
            frequency_penalty=o.frequency_penalty or 0.0,
        )


class ShowRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = ""
    name: str = ""  # the older spelling
    verbose: bool = False

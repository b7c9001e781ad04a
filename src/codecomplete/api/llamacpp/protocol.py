"""llama.cpp server's /infill and /completion (and the /props they are read with), as llama.vim,
llama.vscode (/infill) and Continue's llama.cpp provider (/completion, its own FIM template in
`prompt`) send them.

Spec: https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md (POST /infill,
POST /completion for the shared fields and the response). What each client sends: docs/api.md.

Fields are read as llama.cpp reads them; what we do differently is said per field. Limits (each a
400 in llama.cpp's error body; the comment says which failure it prevents):
- `n_predict` -1 (until the context is full) or 0..--max-tokens-limit; 0 generates nothing and
  only processes the prompt (llama.vim's warm-up that fills the prefix cache);
- `temperature` 0..2, `top_p` 0..1, `top_k` >= 0 (as on the OpenAI routes: a huge temperature
  overflows the sampler);
- `stop` at most --max-stop non-empty strings; texts must be valid Unicode (a lone surrogate makes
  the tokenizer raise: a 500).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from codecomplete.api.completions.protocol import MAX_SEED, _drop_nulls, check_stop_strings, check_text
from codecomplete.api.errors import APIError
from codecomplete.engine.types import MIN_TEMPERATURE, SamplingParams
from codecomplete.models.fim import ContextChunk

# llama.cpp's sampler names, and the one-letter codes of its `samplers` string form.
SAMPLER_CODES = {
    "d": "dry", "k": "top_k", "y": "typ_p", "p": "top_p", "m": "min_p", "x": "xtc", "t": "temperature",
    "s": "top_n_sigma", "i": "infill", "e": "penalties",
}  # fmt: skip


class InfillChunk(BaseModel):
    """One `input_extra` entry: a piece of another file (llama.vim also sends `time`)."""

    model_config = ConfigDict(extra="ignore")

    filename: str = "tmp"
    text: str = ""

    @field_validator("filename", "text")
    @classmethod
    def _valid(cls, value: str) -> str:
        return check_text(value, "input_extra")


class InfillRequest(BaseModel):
    """POST /infill. Unknown fields (`id_slot`, `min_p`, `n_probs`, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    input_prefix: str = ""
    input_suffix: str = ""
    # Extra context chunks, placed before the local context (models/fim.py render_context).
    input_extra: list[InfillChunk] = Field(default_factory=list)
    # The start of the middle (llama.vim: the cursor line up to the cursor). llama.cpp puts it
    # after the FIM middle token; we append it to the prefix (the same text before the cursor).
    prompt: str = ""
    n_predict: Annotated[int, Field(ge=-1)] = -1
    # Stop at the first line (after the first) indented less than this, cut before its text.
    n_indent: Annotated[int, Field(ge=0)] = 0
    t_max_prompt_ms: int = -1  # accepted; llama.cpp does not implement it either
    # Time budget: when it is spent, the completion ends at its last line boundary.
    t_max_predict_ms: int = -1
    cache_prompt: bool = True  # prefix reuse is always on (--prefix-cache-mb)
    stream: bool = False
    samplers: list[str] | str | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.8
    top_k: Annotated[int, Field(ge=0)] = 40
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] = 0.95
    seed: Annotated[int, Field(ge=-1, le=MAX_SEED)] = -1
    stop: list[str] = Field(default_factory=list)
    response_fields: list[str] | None = None
    # llama.vscode asks for several completions at once (its max_parallel_completions); the answer
    # is then a list of response objects.
    n_cmpl: Annotated[int, Field(ge=1)] = 1
    model: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _nulls_mean_default(cls, data: Any) -> Any:
        return _drop_nulls(data, cls)

    @field_validator("input_prefix", "input_suffix", "prompt")
    @classmethod
    def _valid_text(cls, value: str, info) -> str:
        return check_text(value, info.field_name)

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: list[str]) -> list[str]:
        return check_stop_strings(value)

    def sampler_names(self) -> set[str] | None:
        """The sampler chain as names; None: llama.cpp's default chain (all of them)."""
        if self.samplers is None:
            return None
        if isinstance(self.samplers, str):
            return {SAMPLER_CODES.get(c, c) for c in self.samplers}
        return set(self.samplers)

    def chunks(self) -> list[ContextChunk]:
        return [ContextChunk(c.filename, c.text) for c in self.input_extra]

    def check_limits(self, *, max_tokens_limit: int, max_stop: int, max_n: int) -> None:
        if self.n_cmpl > max_n:
            raise APIError.invalid("n_cmpl", f"n_cmpl must be at most {max_n} (--max-n)")
        if self.n_predict > max_tokens_limit:
            raise APIError.invalid(
                "n_predict", f"n_predict must be at most {max_tokens_limit} (--max-tokens-limit)"
            )
        if len(self.stop) > max_stop:
            raise APIError.invalid("stop", f"at most {max_stop} stop strings (--max-stop)")

    def to_sampling_params(self, context_length: int) -> SamplingParams:
        """Only the samplers in `samplers` apply, as in llama.cpp: llama.vim's FIM chain
        ["top_k", "top_p", "infill"] samples at temperature 1 from the top 40 / top 90%. The
        `infill` sampler (llama.cpp's end-of-generation vs text balancing) has no equivalent here."""
        chain = self.sampler_names()

        def on(name: str) -> bool:
            return chain is None or name in chain

        temperature = self.temperature if on("temperature") else 1.0
        return SamplingParams(
            # -1: until the context is full (the engine clamps to what fits).
            max_tokens=self.n_predict if self.n_predict >= 0 else context_length,
            temperature=0.0 if temperature < MIN_TEMPERATURE else temperature,
            top_k=self.top_k if on("top_k") else 0,
            top_p=self.top_p if on("top_p") else 1.0,
            n=self.n_cmpl,
            seed=self.seed if self.seed >= 0 else None,
            stop=list(self.stop),
            deadline_s=self.t_max_predict_ms / 1000.0 if self.t_max_predict_ms > 0 else None,
        )


def indent_cut(text: str, n_indent: int) -> int | None:
    """llama.cpp's `n_indent` rule: where to cut `text`, or None.

    At the start of each line after the first, count the spaces and tabs; once a character follows
    them (a blank line counts), a line indented less than `n_indent` ends the completion there:
    the text keeps that line's indentation and loses the rest, as llama.cpp does.
    """
    if n_indent <= 0:
        return None
    start = text.find("\n")
    while start != -1:
        pos = start + 1
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and pos - (start + 1) < n_indent:
            return pos
        start = text.find("\n", start + 1)
    return None


def select_fields(body: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """llama.cpp's `response_fields`: only the listed fields, nested ones by path ("timings/prompt_n")
    and returned under that path as a flat key (llama.vim reads `timings/prompt_n` so)."""
    if fields is None:
        return body
    out: dict[str, Any] = {}
    for path in fields:
        value: Any = body
        for key in path.split("/"):
            if not isinstance(value, dict) or key not in value:
                break
            value = value[key]
        else:
            out[path] = value
    return out


def llamacpp_error_body(status: int, message: str) -> dict[str, Any]:
    """llama.cpp server's error body: {"error": {"code", "message", "type"}}."""
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        501: "not_supported_error",
        503: "unavailable_error",
    }.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"code": status, "message": message, "type": kind}}

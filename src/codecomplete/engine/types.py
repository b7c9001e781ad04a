"""Plain request/response types shared by the API layer and the engine.

No torch, no fastapi, no pydantic here: the API builds these from its pydantic models and the
engine consumes them. Token ids are plain ints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length"]

# Below this a temperature is greedy decoding, as OpenAI treats 0: dividing logits by 1e-300
# overflows to inf/nan and the draw fails (it took the server down before this existed).
MIN_TEMPERATURE = 1e-5


@dataclass
class SamplingParams:
    """What to generate. Field meanings follow the OpenAI legacy completions API."""

    max_tokens: int = 16
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means off
    n: int = 1
    best_of: int | None = None  # generate best_of, return the n with the highest mean logprob
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    logprobs: int | None = None  # number of top alternatives per generated token (0..5)
    echo: bool = False  # return the prompt in front of the text (and its logprobs when asked)
    ignore_eos: bool = False
    # Copilot's extra.trim_by_indentation: the indentation `c` below which (or at which, unless the
    # line continues the block) generation ends. None = no trimming.
    indent_trim: int | None = None
    # Token healing of a prompt that ends mid-word (engine/healing.py): None = the engine's
    # setting (--token-healing), True/False force it for this request.
    token_healing: bool | None = None
    # A time budget in seconds from the moment the engine receives the request (None: none). When
    # it runs out, each choice ends at its last line boundary with finish_reason "length": an
    # editor has moved on long before a 500-token completion ends on a CPU.
    deadline_s: float | None = None
    # Scheduling order among waiting requests: lower first, equal ones first come first served
    # (vLLM's convention). Interactive single-line requests go ahead of long multi-line ones.
    priority: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature < MIN_TEMPERATURE

    @property
    def num_sequences(self) -> int:
        return max(self.n, self.best_of or 0)


@dataclass
class GenerationRequest:
    """One prompt. A request with n > 1 yields n choices (index 0..n-1)."""

    request_id: str
    params: SamplingParams
    prompt: str | None = None  # text, or
    prompt_token_ids: list[int] | None = None  # token ids (exactly one of the two is set)
    suffix: str | None = None  # text after the cursor: fill-in-the-middle when the model has FIM
    model: str | None = None  # the served name the client asked for (informational)
    # The editor session this request comes from (Copilot's VScode-SessionId, ...): a newer request
    # of the same session supersedes this one (the API cancels it). Informational for engines.
    session_id: str | None = None
    # Fill-in-the-middle: None decides by `suffix` (FIM when it holds more than whitespace: an empty
    # suffix means the cursor is at the end, left-to-right); True forces the FIM template even for an
    # empty suffix (llama.cpp's /infill is always FIM, and its cache warm-up relies on that).
    fim: bool | None = None


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)  # top alternatives (includes the token)
    text_offset: int = 0


@dataclass
class ChoiceDelta:
    """New output for one choice since the previous RequestOutput."""

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None


@dataclass
class EngineError:
    message: str
    type: str = "server_error"  # "invalid_request_error" for a client's mistake
    param: str | None = None
    code: str | None = None
    status: int = 500


@dataclass
class RequestOutput:
    """One event of a request's stream. The first one carries the prompt information."""

    request_id: str
    choices: list[ChoiceDelta] = field(default_factory=list)
    prompt_token_ids: list[int] | None = None  # on the first event: the prompt as fed to the model
    prompt_text: str | None = None  # on the first event: the prompt text (after truncation)
    prompt_logprobs: list[TokenLogprob | None] | None = None  # on the first event, with echo+logprobs
    finished: bool = False  # True on the last event of the request
    error: EngineError | None = None
    num_prompt_tokens: int = 0
    num_generated_tokens: int = 0  # totals so far (for usage)


@dataclass
class ModelInfo:
    """What the API needs to know about the loaded model."""

    name: str  # the primary served name
    served_names: list[str]
    context_length: int
    vocab_size: int
    fim_template: str | None  # None: this model has no fill-in-the-middle tokens
    created: int = 0


@dataclass
class EngineHealth:
    ok: bool
    detail: str = ""
    queue_depth: int = 0
    running: int = 0

"""Per-request and per-choice state kept by the engine loop. Pure Python (no torch).

A RequestState owns one Sequence per generated choice (n, or best_of when larger). Sequences of
one request share the prompt's prefill and fork its KV cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from codecomplete.engine.types import GenerationRequest, RequestOutput, TokenLogprob


@dataclass
class Sequence:
    seq_id: int
    request: RequestState
    index: int  # choice index within the request
    seed: int
    output_ids: list[int] = field(default_factory=list)
    cum_logprob: float = 0.0
    text: str = ""  # decoded completion so far (before any cut)
    sent: int = 0  # characters of `text` already sent
    safe: int = 0  # characters of `text` that may be sent (the rest could still be cut)
    reported: bool = False  # the finish reason went out
    pending_ids: list[int] = field(default_factory=list)  # tokens not yet sent with text
    pending_logprobs: list[TokenLogprob] = field(default_factory=list)
    all_logprobs: list[TokenLogprob] = field(default_factory=list)  # for best_of's final answer
    finished: bool = False
    finish_reason: str | None = None
    detok: Any = None  # IncrementalDetokenizer
    stopper: Any = None  # StopChecker
    generator: Any = None  # numpy.random.Generator, made by the sampler on first use
    bias: Any = None  # (token ids, values) tensors of the request's logit_bias, made on first use
    healing: Any = None  # HealingState while the prompt's healed tail is re-typed (engine/healing.py)
    lookup: Any = None  # PromptLookup over prompt + output (engine/speculate.py), made on first use

    @property
    def params(self):
        return self.request.request.params

    @property
    def mean_logprob(self) -> float:
        return self.cum_logprob / max(1, len(self.output_ids))


@dataclass
class RequestState:
    request: GenerationRequest
    prompt_ids: list[int]
    prompt_text: str
    max_tokens: int
    stop_token_ids: set[int]
    sink: Callable[[RequestOutput], None]
    healed: Any = None  # HealedTail: the prompt's end removed by token healing, re-typed, never sent
    room: int | None = None  # most tokens that fit the context after the prompt (None: max_tokens)
    seqs: list[Sequence] = field(default_factory=list)
    arrival: float = field(default_factory=time.monotonic)
    aborted: bool = False
    finished: bool = False
    first_sent: bool = False
    prompt_logprobs: list[TokenLogprob | None] | None = None
    reused_prefix: int = 0  # prompt tokens whose KV came from the prefix cache
    # Chunked prefill: the first `prefilled` prompt tokens already have KV in `partial_kv`
    # (from the prefix cache and/or earlier chunks); None until the core looked.
    prefilled: int | None = None
    partial_kv: Any = None

    def past_deadline(self, now: float | None = None) -> bool:
        budget = self.request.params.deadline_s
        return budget is not None and (now if now is not None else time.monotonic()) - self.arrival >= budget

    @property
    def chunkable(self) -> bool:
        """echo + logprobs needs every prompt position's logits at once: never chunked."""
        p = self.request.params
        return not (p.echo and p.logprobs is not None)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def num_seqs(self) -> int:
        return self.request.params.num_sequences

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def buffered(self) -> bool:
        """best_of > n: choices are ranked at the end, so nothing streams before that."""
        p = self.request.params
        return p.best_of is not None and p.best_of > p.n

    def unfinished(self) -> list[Sequence]:
        return [s for s in self.seqs if not s.finished]

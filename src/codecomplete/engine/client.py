"""The one abstract engine client the API layer talks to (vLLM's EngineClient).

The API never knows which engine is behind it: our batching engine (`--backend local`), vLLM's
engine in-process (`--backend vllm`), OpenAI-compatible servers (`--backend upstream`), or a test's
scripted fake. The contract every backend keeps:

- Input is a `GenerationRequest` (engine/types.py): a text prompt (or token ids) plus `suffix`, and
  `SamplingParams`. The backend builds the model's prompt itself, FIM template included, through
  the one torch-free prompt path (`engine.inputs.prepare_prompt`: context length, FIM truncation,
  generation reserve) so every backend sees what the local engine would.
- `SamplingParams.deadline_s` (end each choice at its last line boundary with finish_reason
  "length" when the budget runs out), `.priority` (lower first), `.stop`, `.indent_trim` are the
  backend's to honour; `GenerationRequest.session_id` is informational (superseding a session's
  older request is the API's job: it calls `abort`).
- Output is a stream of `RequestOutput` events: text deltas per choice index, the prompt as fed on
  the first event, `finished` on the last, `error` (an `EngineError`) instead of raising once the
  stream has started. Closing the iterator early aborts the request.
- `unsupported`: the request features a backend cannot honour (names from `FEATURES`); the API
  answers a request that uses one with a 400 naming the parameter, never a silent difference.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator

from codecomplete.engine.types import EngineHealth, GenerationRequest, ModelInfo, RequestOutput


class QueueFullError(Exception):
    """The waiting queue is at --max-queue; the API answers 429 with Retry-After."""

    def __init__(self, retry_after: float = 1.0):
        super().__init__("the server's request queue is full; retry later")
        self.retry_after = retry_after


# Request features a backend may lack (EngineClient.unsupported).
FEATURES = frozenset(
    {"token_healing", "logprobs", "echo", "prompt_token_ids", "best_of", "logit_bias", "top_k", "seed"}
)


class EngineClient(abc.ABC):
    model_info: ModelInfo
    unsupported: frozenset[str] = frozenset()

    @abc.abstractmethod
    async def start(self) -> None:
        """Load the model and start the engine loop (called from the app's lifespan)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the loop; in-flight requests end with an error event."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[RequestOutput]:
        """Submit a request and stream its outputs. Raises QueueFullError when the queue is full.

        Closing the iterator early (client gone) aborts the request.
        """

    @abc.abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop a request at the next step boundary and free its slot."""

    @abc.abstractmethod
    def health(self) -> EngineHealth:
        """ok is True once the model is loaded and the loop is alive."""

    def metrics(self) -> dict[str, float]:
        """Engine gauges and counters for /metrics (queue depth, running, cancelled, ...)."""
        return {}

"""The one abstract engine client the API layer talks to (vLLM's EngineClient).

The API never knows which engine is behind it: the batching engine, a test's scripted fake,
or a remote one.
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


class EngineClient(abc.ABC):
    model_info: ModelInfo

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

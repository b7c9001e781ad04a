"""Generation: the batching engine behind the abstract EngineClient.

`build_engine` imports torch lazily, so importing this package stays cheap for the API layer.
"""

from __future__ import annotations

from codecomplete.engine.client import EngineClient, QueueFullError
from codecomplete.engine.config import EngineConfig


def build_engine(config: EngineConfig) -> EngineClient:
    """The engine for `config`, not started: the API's lifespan calls `await engine.start()`."""
    from codecomplete.engine.process import ProcessEngine, use_engine_process

    if use_engine_process(config.process):
        return ProcessEngine(config)
    from codecomplete.engine.async_engine import AsyncEngine

    return AsyncEngine(config)


__all__ = ["EngineClient", "EngineConfig", "QueueFullError", "build_engine"]

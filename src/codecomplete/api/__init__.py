"""HTTP only: the app factory, OpenAI-shaped request/response models, routes, SSE, error mapping.

Sees the engine only through `codecomplete.engine.client.EngineClient`; never imports torch.
"""

from codecomplete.api.app import build_app

__all__ = ["build_app"]

"""FastAPI dependencies: settings, the serving objects and the API key check, read from app.state.

build_app() puts them there, so a test overrides them by building its own app (no globals).
"""

from __future__ import annotations

import hmac

from fastapi import Request

from codecomplete.api.errors import APIError
from codecomplete.engine.client import EngineClient
from codecomplete.settings import ServerSettings


def get_settings(request: Request) -> ServerSettings:
    return request.app.state.settings


def get_engine(request: Request) -> EngineClient:
    return request.app.state.engine


def require_api_key(request: Request) -> None:
    """With --api-key: `Authorization: Bearer <key>`, compared in constant time.

    Without it, nothing is checked and no route ever answers 401/403: Copilot sends its own GitHub
    token and throws it away on a 401.
    """
    key = request.app.state.settings.api_key_value()
    if key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise APIError(
            401,
            "missing or wrong API key: send `Authorization: Bearer <key>` with the server's --api-key",
            code="invalid_api_key",
        )


def check_ready(engine: EngineClient) -> None:
    """503 + Retry-After while the engine is not serving (loading, stopped, or its loop died)."""
    health = engine.health()
    if not health.ok:
        raise APIError(
            503,
            f"the model is not ready: {health.detail}",
            type="server_error",
            code="engine_unavailable",
            headers={"Retry-After": "5"},
        )

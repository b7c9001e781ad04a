"""Operational routes: /health, /metrics, and Copilot's token endpoint."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from codecomplete.api.metrics import CONTENT_TYPE

router = APIRouter()

TOKEN_LIFETIME_S = 3600


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    detail: str = ""
    queue_depth: int = 0
    running: int = 0


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Loading, stopped, or the engine loop died"}},
)
async def health(request: Request) -> JSONResponse:
    """200 once the model is loaded and the engine loop is alive, 503 otherwise."""
    h = request.app.state.engine.health()
    body = {
        "status": "ok" if h.ok else "unavailable",
        "detail": h.detail,
        "queue_depth": h.queue_depth,
        "running": h.running,
    }
    return JSONResponse(body, status_code=200 if h.ok else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}
    },
)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)


@router.get("/copilot_internal/v2/token")
async def copilot_token() -> JSONResponse:
    """copilot.vim and some proxy setups fetch a Copilot token from the server they talk to.

    The token is opaque to us (we never check it; --api-key, when set, is checked separately), so
    any fixed string works; the client refreshes after `refresh_in` seconds.
    """
    now = int(time.time())
    return JSONResponse(
        {
            "token": "codecomplete-local",
            "expires_at": now + TOKEN_LIFETIME_S,
            "refresh_in": TOKEN_LIFETIME_S // 2,
        }
    )

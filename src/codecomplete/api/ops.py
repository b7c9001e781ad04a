"""Operational routes: /health and /metrics (Copilot's token endpoint is in api/copilot)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from codecomplete.api.metrics import CONTENT_TYPE

router = APIRouter()


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
    """200 once the model is loaded and the engine loop is alive, 503 otherwise.

    llama.cpp's clients read the same route: its `{"status": "ok"}` is ours, and a 503 also carries
    llama.cpp's `error` object."""
    h = request.app.state.engine.health()
    body = {
        "status": "ok" if h.ok else "unavailable",
        "detail": h.detail,
        "queue_depth": h.queue_depth,
        "running": h.running,
    }
    if not h.ok:
        body["error"] = {"code": 503, "message": f"Loading model ({h.detail})", "type": "unavailable_error"}
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

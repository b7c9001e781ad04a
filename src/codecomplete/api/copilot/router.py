"""Copilot's control-plane routes (copilot/protocol.py says what the client needs from each).

With these the Copilot language server (copilot.vim, copilot.lua, JetBrains, VS Code) runs against
this server alone: `GH_COPILOT_TOKEN=<anything without '='>` plus `GH_COPILOT_API_URL` and
`GH_COPILOT_SERVER_URL` pointing here skip GitHub sign-in, and the token's `endpoints` send every
later call (completions, telemetry, experiments) here too. None of these routes checks --api-key:
the client sends its own GitHub token to them, never ours (it sends that token to the completion
routes too, so --api-key and Copilot do not mix; README, Client setup).
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from codecomplete.api.body import read_body
from codecomplete.api.copilot import protocol
from codecomplete.api.errors import APIError

router = APIRouter(tags=["copilot"])


def _github_headers() -> dict[str, str]:
    # The client rejects a 200 without it: "does not appear to originate from GitHub".
    return {"x-github-request-id": uuid.uuid4().hex[:20].upper()}


def _base_url(raw: Request) -> str:
    return str(raw.base_url).rstrip("/")


@router.get("/copilot_internal/v2/token")
async def copilot_token(raw: Request) -> JSONResponse:
    """The Copilot token (opaque: nobody checks it) and the endpoints that point back here."""
    body = protocol.token_envelope(_base_url(raw), int(time.time()))
    return JSONResponse(body, headers=_github_headers())


@router.get("/copilot_internal/user")
async def copilot_user(raw: Request) -> JSONResponse:
    return JSONResponse(protocol.user_info(_base_url(raw)), headers=_github_headers())


@router.get("/telemetry")
async def experiment_config() -> JSONResponse:
    """The experiment-config lookup (the client GETs `<endpoints.telemetry>/telemetry`)."""
    return JSONResponse(protocol.experiment_config(), headers=_github_headers())


@router.post("/telemetry")
@router.post("/telemetry/v2/track", include_in_schema=False)
async def telemetry(raw: Request) -> JSONResponse:
    """The telemetry sink: shown/accepted/rejected become codecomplete_copilot_events_total and the
    acceptance rate in /metrics; everything else is read and dropped (nothing is stored)."""
    limit = raw.app.state.settings.max_body_bytes
    try:
        payload = await read_body(raw, limit)
        items = protocol.decode_body(payload, raw.headers.get("content-encoding"), limit)
    except (APIError, protocol.TelemetryError) as exc:
        status = exc.status if isinstance(exc, APIError) else 400
        message = exc.message if isinstance(exc, APIError) else str(exc)
        # Application Insights' own error shape (the client's telemetry library reads it).
        body = {
            "itemsReceived": 0,
            "itemsAccepted": 0,
            "errors": [{"index": 0, "statusCode": status, "message": message}],
        }
        return JSONResponse(body, status_code=status, headers={"x-should-retry": "false"})
    events = raw.app.state.metrics.copilot
    for item in items:
        event = protocol.completion_event(item)
        if event is not None:
            events.record(event.event, event.language)
    return JSONResponse({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})

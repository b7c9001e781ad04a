"""Copilot's control-plane routes (copilot/protocol.py says what the client needs from each).

With these the Copilot language server (copilot.vim, copilot.lua, JetBrains, VS Code) runs against
this server alone: `GH_COPILOT_TOKEN=<anything without '='>` plus `GH_COPILOT_API_URL` and
`GH_COPILOT_SERVER_URL` pointing here skip GitHub sign-in, and the token's `endpoints` send every
later call (completions, telemetry, experiments) here too.

With --api-key the user sets GH_COPILOT_TOKEN to the key (it must not contain '='): the token route
checks it (`Authorization: token|Bearer <key>`, the client sends its GH_COPILOT_TOKEN there) and
hands the key back as the Copilot token, which the client then sends as `Bearer <key>` to the
completion and model routes. Without --api-key nothing is checked. The telemetry routes carry no
credentials (the client sends none) and stay open.
"""

from __future__ import annotations

import hmac
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


class _GitHubError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status

    def response(self) -> JSONResponse:
        body = {"message": str(self), "documentation_url": "https://docs.github.com/rest"}
        return JSONResponse(body, status_code=self.status, headers=_github_headers())


def _check_key(raw: Request) -> str | None:
    """The --api-key when one is set and the client sent it; None when none is set. A wrong or
    missing key raises a 401 in GitHub's own error shape (what the client expects from here)."""
    key = raw.app.state.settings.api_key_value()
    if key is None:
        return None
    scheme, _, given = raw.headers.get("authorization", "").partition(" ")
    if scheme.lower() not in ("token", "bearer") or not hmac.compare_digest(
        given.strip().encode(), key.encode()
    ):
        raise _GitHubError(401, "Bad credentials: set GH_COPILOT_TOKEN to the server's --api-key")
    return key


@router.get("/copilot_internal/v2/token")
async def copilot_token(raw: Request) -> JSONResponse:
    """The Copilot token (the --api-key when one is set, else a fixed string nobody checks) and the
    endpoints that point back here."""
    try:
        key = _check_key(raw)
    except _GitHubError as exc:
        return exc.response()
    body = protocol.token_envelope(_base_url(raw), int(time.time()), token=key)
    return JSONResponse(body, headers=_github_headers())


@router.get("/copilot_internal/user")
async def copilot_user(raw: Request) -> JSONResponse:
    try:
        _check_key(raw)
    except _GitHubError as exc:
        return exc.response()
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

"""Tabby's routes: /v1/health (GET, and POST as older agents send it) and /v1/events. Its
completion shares POST /v1/completions with OpenAI's and is dispatched there (api/completions/
router.py). Errors on these routes are Tabby's plain-text ones."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response

from codecomplete.api.body import parse_request
from codecomplete.api.deps import check_ready, require_api_key
from codecomplete.api.errors import render_errors_as
from codecomplete.api.tabby.protocol import LogEventRequest
from codecomplete.api.tabby.serving import tabby_error

router = APIRouter(dependencies=[Depends(render_errors_as(tabby_error)), Depends(require_api_key)])


@router.get("/v1/health")
@router.post("/v1/health", include_in_schema=False)
async def health(raw: Request) -> JSONResponse:
    check_ready(raw.app.state.engine)
    return JSONResponse(raw.app.state.tabby.health())


@router.post("/v1/events")
async def events(raw: Request) -> Response:
    event = await parse_request(raw, LogEventRequest, raw.app.state.settings.max_body_bytes)
    raw.app.state.tabby.log_event(event, raw.query_params.get("select_kind"))
    return Response(status_code=200)

"""Completion routes: openai 1.x (/v1/completions), the engine-in-path routes of Copilot, the
fauxpilot extension and openai 0.x, and both again without /v1 (PROTOCOLS.md, Routes)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from codecomplete.api.body import parse_request
from codecomplete.api.completions.protocol import CompletionRequest
from codecomplete.api.deps import require_api_key

router = APIRouter(dependencies=[Depends(require_api_key)])


async def _create(raw: Request, engine: str | None) -> Response:
    settings = raw.app.state.settings
    request = await parse_request(raw, CompletionRequest, settings.max_body_bytes)
    return await raw.app.state.completions.create(request, raw, engine_name=engine)


@router.post("/v1/completions", response_model=None)
@router.post("/completions", response_model=None, include_in_schema=False)
async def create_completion(raw: Request) -> Response:
    return await _create(raw, None)


# `engine` may contain slashes (model-like names such as org/model): the path converter allows them.
@router.post("/v1/engines/{engine:path}/completions", response_model=None)
@router.post("/engines/{engine:path}/completions", response_model=None, include_in_schema=False)
async def create_engine_completion(engine: str, raw: Request) -> Response:
    return await _create(raw, engine)

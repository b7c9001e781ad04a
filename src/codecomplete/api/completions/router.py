"""Completion routes: openai 1.x (/v1/completions), the engine-in-path routes of Copilot, the
fauxpilot extension and openai 0.x, and both again without /v1 (PROTOCOLS.md, Routes).

Tabby's plugins POST to /v1/completions too: a body with `segments` and no `prompt` is Tabby's
(api/tabby/), answered and failed in Tabby's format; every other body is OpenAI's, unchanged."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from codecomplete.api.body import parse_request, read_json_object, validate
from codecomplete.api.completions.protocol import CompletionRequest
from codecomplete.api.deps import require_api_key
from codecomplete.api.tabby.protocol import TabbyCompletionRequest, is_tabby_body
from codecomplete.api.tabby.serving import tabby_error

router = APIRouter(dependencies=[Depends(require_api_key)])


async def _create(raw: Request, engine: str | None) -> Response:
    settings = raw.app.state.settings
    request = await parse_request(raw, CompletionRequest, settings.max_body_bytes)
    return await raw.app.state.completions.create(request, raw, engine_name=engine)


@router.post("/v1/completions", response_model=None)
@router.post("/completions", response_model=None, include_in_schema=False)
async def create_completion(raw: Request) -> Response:
    obj = await read_json_object(raw, raw.app.state.settings.max_body_bytes)
    if is_tabby_body(obj):
        raw.state.render_error = tabby_error
        return await raw.app.state.tabby.create(validate(obj, TabbyCompletionRequest), raw)
    request = validate(obj, CompletionRequest)
    return await raw.app.state.completions.create(request, raw, engine_name=None)


# `engine` may contain slashes (model-like names such as org/model): the path converter allows them.
@router.post("/v1/engines/{engine:path}/completions", response_model=None)
@router.post("/engines/{engine:path}/completions", response_model=None, include_in_schema=False)
async def create_engine_completion(engine: str, raw: Request) -> Response:
    return await _create(raw, engine)

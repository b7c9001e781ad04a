"""Ollama's routes (Continue, Twinny, Cody, the `ollama` packages): /api/generate, /api/tags,
/api/show, /api/ps, /api/version. Errors on these routes are Ollama's {"error": "..."}."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response

from codecomplete.api.body import parse_request
from codecomplete.api.deps import check_ready, require_api_key
from codecomplete.api.errors import render_errors_as
from codecomplete.api.ollama.protocol import GenerateRequest, ShowRequest
from codecomplete.api.ollama.serving import OLLAMA_API_VERSION, ollama_error

router = APIRouter(dependencies=[Depends(render_errors_as(ollama_error)), Depends(require_api_key)])


@router.post("/api/generate", response_model=None)
async def generate(raw: Request) -> Response:
    request = await parse_request(raw, GenerateRequest, raw.app.state.settings.max_body_bytes)
    return await raw.app.state.ollama.generate(request, raw)


@router.get("/api/tags")
async def tags(raw: Request) -> JSONResponse:
    check_ready(raw.app.state.engine)
    return JSONResponse(raw.app.state.ollama.tags())


@router.post("/api/show")
async def show(raw: Request) -> JSONResponse:
    request = await parse_request(raw, ShowRequest, raw.app.state.settings.max_body_bytes)
    check_ready(raw.app.state.engine)
    return JSONResponse(raw.app.state.ollama.show(request.model or request.name))


@router.get("/api/ps")
async def ps(raw: Request) -> JSONResponse:
    return JSONResponse(raw.app.state.ollama.ps())


@router.get("/api/version")
async def version() -> JSONResponse:
    return JSONResponse({"version": OLLAMA_API_VERSION})

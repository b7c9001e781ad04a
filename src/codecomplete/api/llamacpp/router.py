"""llama.cpp server routes: POST /infill (llama.vim, llama.vscode), POST /completion (Continue's
llama.cpp provider) and GET /props (llama.vscode reads `default_generation_settings.n_ctx`).
Errors on these routes are llama.cpp's {"error": {"code", "message", "type"}}. /health is shared
with ours (api/ops.py): its body satisfies both."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response

from codecomplete.api.body import parse_request
from codecomplete.api.deps import check_ready, require_api_key
from codecomplete.api.errors import render_errors_as
from codecomplete.api.llamacpp.protocol import InfillRequest
from codecomplete.api.llamacpp.serving import llamacpp_error

router = APIRouter(dependencies=[Depends(render_errors_as(llamacpp_error)), Depends(require_api_key)])


@router.post("/infill", response_model=None)
async def infill(raw: Request) -> Response:
    request = await parse_request(raw, InfillRequest, raw.app.state.settings.max_body_bytes)
    return await raw.app.state.infill.create(request, raw)


@router.post("/completion", response_model=None)
async def completion(raw: Request) -> Response:
    request = await parse_request(raw, InfillRequest, raw.app.state.settings.max_body_bytes)
    return await raw.app.state.infill.create(request, raw, fim=False)


@router.get("/props")
async def props(raw: Request) -> JSONResponse:
    check_ready(raw.app.state.engine)
    return JSONResponse(raw.app.state.infill.props())

"""POST /autocomplete for the ivolution plugin (any Content-Type; the body must be JSON)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response

from codecomplete.api.autocomplete.protocol import AutocompleteRequest
from codecomplete.api.body import parse_request
from codecomplete.api.completions.serving import CLIENT_CLOSED
from codecomplete.api.deps import require_api_key

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/autocomplete", response_model=None)
async def autocomplete(raw: Request) -> Response:
    request = await parse_request(raw, AutocompleteRequest, raw.app.state.settings.max_body_bytes)
    result = await raw.app.state.autocomplete.create(request, raw)
    if result is None:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(result.model_dump())

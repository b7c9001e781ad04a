"""POST /autocomplete for the ivolution plugin (any Content-Type; the body must be JSON)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response

from codecomplete.api.autocomplete.protocol import AutocompleteRequest, AutocompleteResponse
from codecomplete.api.body import JSONBodyRoute
from codecomplete.api.completions.serving import CLIENT_CLOSED
from codecomplete.api.deps import require_api_key
from codecomplete.api.errors import error_responses

router = APIRouter(dependencies=[Depends(require_api_key)], route_class=JSONBodyRoute)


@router.post(
    "/autocomplete",
    response_model=AutocompleteResponse,
    responses=error_responses(400, 401, 413, 415, 429, 503),
)
async def autocomplete(request: AutocompleteRequest, raw: Request) -> Response:
    """`n` continuations of `text` (the ivolution VS Code plugin's protocol)."""
    result = await raw.app.state.autocomplete.create(request, raw)
    if result is None:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(result.model_dump())

"""Completion routes: openai 1.x (/v1/completions), the engine-in-path routes of Copilot, the
fauxpilot extension and openai 0.x, and both again without /v1 (PROTOCOLS.md, Routes).

Each route declares its body, so /openapi.json and /docs describe it; the body is read and checked
by `JSONBodyRoute` (body.py) before FastAPI validates it, and a validation error is a 400 in the
OpenAI error shape (errors.py).

Tabby's plugins POST to /v1/completions too: a body with `segments` and no `prompt` is Tabby's
(api/tabby/), answered and failed in Tabby's format before the OpenAI model sees it
(`OpenAIOrTabbyRoute`); every other body is OpenAI's, unchanged."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from codecomplete.api.body import JSONBodyRoute, validate
from codecomplete.api.completions.protocol import CompletionRequest, CompletionResponse
from codecomplete.api.deps import require_api_key
from codecomplete.api.errors import error_responses
from codecomplete.api.tabby.protocol import TabbyCompletionRequest, is_tabby_body
from codecomplete.api.tabby.serving import tabby_error

router = APIRouter(dependencies=[Depends(require_api_key)], route_class=JSONBodyRoute)

SSE_EXAMPLE = (
    'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m",'
    '"choices":[{"text":" return","index":0,"logprobs":null,"finish_reason":null}]}\n\n'
    "data: [DONE]\n\n"
)
# One server-sent event: `data:` only (no `event:`, `id:` or comments; PROTOCOLS.md).
SSE_EVENT = {
    "type": "object",
    "properties": {
        "data": {
            "type": "string",
            "description": "A CompletionResponse chunk as one line of JSON, an error object, or [DONE] last",
        }
    },
    "required": ["data"],
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The completion; with `stream: true` server-sent events of the same object, then [DONE]",
        "content": {"text/event-stream": {"schema": SSE_EVENT, "example": SSE_EXAMPLE}},
    },
    **error_responses(400, 401, 413, 415, 429, 503),
}


async def _create(raw: Request, request: CompletionRequest, engine: str | None) -> Response:
    return await raw.app.state.completions.create(request, raw, engine_name=engine)


class OpenAIOrTabbyRoute(JSONBodyRoute):
    """/v1/completions: a Tabby body goes to Tabby's serving (its own validation and error format)."""

    async def divert(self, request: Request, obj: dict[str, Any]) -> Response | None:
        if not is_tabby_body(obj):
            return None
        request.state.render_error = tabby_error
        return await request.app.state.tabby.create(validate(obj, TabbyCompletionRequest), request)


async def create_completion(request: CompletionRequest, raw: Request) -> Response:
    """A completion of `prompt` (fill-in-the-middle with `suffix`), OpenAI's legacy completions API.
    A Tabby body (`segments`, no `prompt`) is answered in Tabby's format."""
    return await _create(raw, request, None)


for _path, _in_schema in (("/v1/completions", True), ("/completions", False)):
    router.add_api_route(
        _path,
        create_completion,
        methods=["POST"],
        response_model=CompletionResponse,
        responses=RESPONSES if _in_schema else None,
        include_in_schema=_in_schema,
        route_class_override=OpenAIOrTabbyRoute,
    )


# `engine` may contain slashes (model-like names such as org/model): the path converter allows them.
@router.post("/v1/engines/{engine:path}/completions", response_model=CompletionResponse, responses=RESPONSES)
@router.post("/engines/{engine:path}/completions", response_model=CompletionResponse, include_in_schema=False)
async def create_engine_completion(engine: str, request: CompletionRequest, raw: Request) -> Response:
    """The same with the model in the path (Copilot, the fauxpilot extension, openai 0.x)."""
    return await _create(raw, request, engine)

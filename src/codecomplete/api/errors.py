"""The one place where exceptions become the OpenAI error body.

Every error the server sends is `{"error": {"message", "type", "param", "code"}}` with a 4xx/5xx
status (PROTOCOLS.md, Errors):
- validation errors are 400, never FastAPI's 422 `{"detail": ...}` (openai-python 0.x cannot parse it);
- a full queue is 429 with Retry-After; nothing is ever 409 (openai-python 0.x retries it forever);
- `x-should-retry: false` goes on every error a retry cannot fix (the openai clients otherwise
  retry 408/409/429/5xx), so only 429/503 and unexpected 500s invite a retry.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from codecomplete.api.editor import Superseded
from codecomplete.api.shutdown import ShuttingDown
from codecomplete.engine.client import QueueFullError
from codecomplete.engine.types import EngineError

log = logging.getLogger("codecomplete.api")

RETRYABLE = {408, 429, 500, 502, 503, 504}
# nginx's "client closed request": a request whose client went away, or that a newer request of the
# same editor session superseded (api/editor.py); never retried (the editor has moved on).
CLIENT_CLOSED = 499


class APIError(Exception):
    """An error answer. Raise it anywhere in the API layer; `error_response` renders it."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        assert status != 409, "never 409: openai-python 0.x retries it forever"
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    @classmethod
    def from_engine(cls, err: EngineError) -> APIError:
        status = err.status if 400 <= err.status < 600 and err.status != 409 else 500
        return cls(status, err.message, type=err.type, param=err.param, code=err.code)

    @classmethod
    def queue_full(cls, exc: QueueFullError) -> APIError:
        retry_after = max(1, math.ceil(exc.retry_after))
        return cls(
            429,
            str(exc),
            type="server_overloaded",
            code="queue_full",
            headers={"Retry-After": str(retry_after)},
        )

    @classmethod
    def invalid(cls, param: str | None, message: str, code: str | None = "invalid_value") -> APIError:
        return cls(400, message, param=param, code=code)


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The body of every error answer (what `APIError.body()` renders), for the OpenAPI document."""

    error: ErrorDetail


_ERROR_DOCS = {
    400: "A bad field or body: `param` names the field",
    401: "Missing or wrong API key (only with --api-key)",
    404: "Unknown model or route",
    413: "The body is larger than --max-body-bytes",
    415: "A form or multipart body instead of JSON",
    429: "The queue is full; retry after Retry-After seconds",
    503: "The model is not loaded yet (Retry-After)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the errors a route can answer, all in the OpenAI error shape."""
    out: dict[int | str, dict[str, Any]] = {
        s: {"model": ErrorResponse, "description": _ERROR_DOCS[s]} for s in statuses
    }
    out["4XX"] = {"model": ErrorResponse, "description": "Any other client error"}
    return out


def error_response(err: APIError) -> JSONResponse:
    headers = dict(err.headers)
    if err.status not in RETRYABLE:
        headers.setdefault("x-should-retry", "false")
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


def to_api_error(exc: BaseException) -> APIError:
    """Map anything raised while serving a request to the error the client sees."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, QueueFullError):
        return APIError.queue_full(exc)
    if isinstance(exc, Superseded):
        return APIError(CLIENT_CLOSED, str(exc), code="superseded")
    if isinstance(exc, ShuttingDown):
        return APIError(
            503,
            str(exc),
            type="server_error",
            code="shutting_down",
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, RequestValidationError):
        # Request bodies are validated in body.py; a pydantic ValidationError that gets here comes
        # from building a response, i.e. a bug: it stays a 500.
        return from_validation_errors(list(exc.errors()))
    if isinstance(exc, StarletteHTTPException):
        return _from_http_exception(exc)
    log.exception("unexpected error while serving a request", exc_info=exc)
    return APIError(
        500, "internal server error; see the server log", type="server_error", code="internal_error"
    )


def _loc_to_param(loc: tuple[Any, ...] | list[Any]) -> str | None:
    # FastAPI prefixes "body"; pydantic adds the union member tried ("str", "list[int]", ...).
    parts = [str(p) for p in loc if p not in ("body",)]
    keep: list[str] = []
    for p in parts:
        if keep and ("[" in p or p in ("str", "int", "float", "bool", "function-after", "function-before")):
            break
        keep.append(p)
    return ".".join(keep) or None


def from_validation_errors(errors: list[dict[str, Any]]) -> APIError:
    if not errors:
        return APIError.invalid(None, "invalid request")
    first = errors[0]
    param = _loc_to_param(first.get("loc", ()))
    msg = first.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return APIError.invalid(None, "the body is not valid JSON", code="invalid_json")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    message = f"{param}: {msg}{more}" if param else f"{msg}{more}"
    code = "missing_required_parameter" if kind == "missing" else "invalid_value"
    if kind == "missing":
        message = f"you must provide a '{param}' parameter"
    return APIError.invalid(param, message, code=code)


def _from_http_exception(exc: StarletteHTTPException) -> APIError:
    status = exc.status_code if exc.status_code != 409 else 400
    if status == 404:
        return APIError(
            404, str(exc.detail) if exc.detail != "Not Found" else "unknown route", code="not_found"
        )
    if status == 405:
        return APIError(405, "method not allowed on this route", code="method_not_allowed")
    return APIError(status, str(exc.detail), type="invalid_request_error" if status < 500 else "server_error")


ErrorRenderer = Callable[[APIError], Response]


def render_errors_as(renderer: ErrorRenderer) -> Callable[[Request], None]:
    """A route dependency: errors of this route are rendered by `renderer` (another protocol's
    error body: llama.cpp's, Ollama's, Tabby's) instead of the OpenAI one."""

    def dependency(request: Request) -> None:
        request.state.render_error = renderer

    return dependency


def install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        err = to_api_error(exc)
        if err.status >= 500:
            log.warning("%s %s -> %d %s", request.method, request.url.path, err.status, err.message)
        render = getattr(request.state, "render_error", None) or error_response
        return render(err)

    for kind in (
        APIError,
        QueueFullError,
        ShuttingDown,
        RequestValidationError,
        StarletteHTTPException,
        Exception,
    ):
        app.add_exception_handler(kind, handle)

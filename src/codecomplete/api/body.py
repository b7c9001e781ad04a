"""Reading a JSON request body at the boundary: size limit, UTF-8, JSON, an object.

Routes declare their pydantic body (OpenAPI describes it) and use `JSONBodyRoute` (below), which
reads the body here first. We read bodies ourselves instead of letting FastAPI do it so that every way a body can be bad is
a 4xx in the OpenAI error format with a message that says what was wrong:
- larger than --max-body-bytes: 413 (prevents a 10 MB prompt from tying up the tokenizer);
- not UTF-8: 400 (prevents a 500 from a decode error deep inside);
- not JSON: 400, or 415 when the Content-Type says it is something else (a form, multipart);
  a JSON body is accepted whatever its Content-Type, because `curl -d` sends form-urlencoded and
  the ivolution plugin sends anything;
- NaN/Infinity, floats beyond +-1.8e308 and integers of thousands of digits: a 400 naming the
  field (`temperature: NaN is not a finite number`); they would overflow further down;
- not an object: 400.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from codecomplete.api.deps import require_api_key
from codecomplete.api.errors import APIError, from_validation_errors

M = TypeVar("M", bound=BaseModel)

JSON_TYPES = ("application/json", "text/json", "application/x-json")


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
    except ClientDisconnect:
        raise APIError(
            400, "the client closed the connection while sending the body", code="client_closed"
        ) from None
    return b"".join(chunks)


def _too_large(max_bytes: int) -> APIError:
    return APIError(
        413,
        f"the request body is larger than the server's limit of {max_bytes} bytes (--max-body-bytes)",
        code="request_too_large",
    )


class _NotFinite:
    """Stands in for a number we refuse, so the 400 can name the field it was sent in."""

    def __init__(self, text: str):
        self.text = text


def _constant(name: str) -> _NotFinite:
    return _NotFinite(name)  # NaN, Infinity, -Infinity: not JSON, but Python's json accepts them


def _float(text: str) -> float | _NotFinite:
    value = float(text)  # 1e999 is inf: the sampler would divide by it
    return value if math.isfinite(value) else _NotFinite(text[:20])


def _int(text: str) -> int | _NotFinite:
    # int() refuses more than 4,300 digits (a ValueError that used to say only "invalid JSON").
    if len(text.lstrip("-")) > 4300:
        return _NotFinite(f"{text[:12]}... ({len(text)} digits)")
    return int(text)


def _first_not_finite(value: Any) -> tuple[str, _NotFinite] | None:
    """The dotted path and value of the first refused number (iterative: bodies nest deeply)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, _NotFinite):
            return path, v
        if isinstance(v, dict):
            stack.extend((f"{path}.{k}" if path else str(k), x) for k, x in reversed(v.items()))
        elif isinstance(v, list):
            stack.extend((f"{path}.{i}" if path else str(i), x) for i, x in reversed(list(enumerate(v))))
    return None


def parse_json_object(raw: bytes, content_type: str | None) -> dict[str, Any]:
    ctype = (content_type or "").split(";")[0].strip().lower()
    declared_other = ctype.startswith(("multipart/", "application/x-www-form-urlencoded"))
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError.invalid(
            None, f"the body is not valid UTF-8 (byte {e.start})", code="invalid_encoding"
        ) from None
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except (ValueError, RecursionError) as e:
        if declared_other:
            raise APIError(
                415,
                f"expected a JSON body (Content-Type: application/json), got {ctype}",
                code="unsupported_media_type",
            ) from None
        detail = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        raise APIError.invalid(None, f"the body is not valid JSON: {detail}", code="invalid_json") from None
    bad = _first_not_finite(value)
    if bad is not None:
        param, number = bad
        raise APIError.invalid(
            param or None,
            f"{param or 'the body'}: {number.text} is not a finite number "
            "(NaN, Infinity and numbers beyond 1.8e308 are not accepted)",
        )
    if not isinstance(value, dict):
        raise APIError.invalid(None, "the body must be a JSON object", code="invalid_json")
    return value


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    raw = await read_body(request, max_bytes)
    return parse_json_object(raw, request.headers.get("content-type"))


def validate(obj: dict[str, Any], model: type[M]) -> M:
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        raise from_validation_errors(e.errors()) from None


async def parse_request(request: Request, model: type[M], max_bytes: int) -> M:
    return validate(await read_json_object(request, max_bytes), model)


class JSONBodyRoute(APIRoute):
    """A route whose endpoint declares its pydantic body (so /openapi.json describes it) while the
    body is still read here: size limit, UTF-8, JSON without NaN, an object, any Content-Type.

    FastAPI alone would take a `curl -d` (form-urlencoded) or an ivolution body (text/plain) as
    bytes and fail validation, accept NaN, and read bodies of any size. So the handler below reads
    and checks the body first, then hands FastAPI a request whose JSON is already parsed and whose
    Content-Type says so; validation of the model is FastAPI's, and its RequestValidationError
    becomes a 400 in the OpenAI error shape in errors.py (never a 422).
    """

    async def divert(self, request: Request, obj: dict[str, Any]) -> Response | None:
        """A subclass may answer a body itself (another protocol on the same path); None: go on."""
        return None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            require_api_key(request)  # a 401 before reading the body, as for every API route
            raw = await read_body(request, request.app.state.settings.max_body_bytes)
            obj = parse_json_object(raw, request.headers.get("content-type"))
            diverted = await self.divert(request, obj)
            if diverted is not None:
                return diverted
            return await handler(_as_json_request(request, raw, obj))

        return checked


def _as_json_request(request: Request, raw: bytes, obj: dict[str, Any]) -> Request:
    # A copy of the scope that shares its `state`: what route dependencies put in request.state
    # (errors.py `render_errors_as`) is what the error handler, which sees the original, reads.
    request.scope.setdefault("state", {})
    scope = dict(request.scope)
    headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
    scope["headers"] = [*headers, (b"content-type", b"application/json")]
    parsed = Request(scope, request.receive)
    parsed._body = raw  # what Request.body() and .json() return without reading the stream again
    parsed._json = obj
    return parsed

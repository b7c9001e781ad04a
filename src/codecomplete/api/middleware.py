"""Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer and delay streamed responses)."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codecomplete.api.metrics import ServerMetrics

_SLASHES = re.compile(r"/{2,}")


def normalize_path(path: str) -> str:
    """`//v1/engines//x/completions/` -> `/v1/engines/x/completions`.

    Copilot glues the user's proxy URL and the path without normalising, so a trailing slash in the
    setting gives `//v1/...`; a trailing slash would otherwise be a 307 redirect that POST clients
    do not follow.
    """
    path = _SLASHES.sub("/", path)
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


class NormalizePathMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = normalize_path(scope["path"])
            if path != scope["path"]:
                scope = dict(scope)
                scope["path"] = path
                scope["raw_path"] = path.encode("utf-8", "surrogateescape")
        await self.app(scope, receive, send)


class RequestMetricsMiddleware:
    """Counts every HTTP request by its route template (not the raw path) and status."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(
                route=template, method=scope.get("method", ""), status=str(status)
            ).inc()

"""Server-sent events exactly as PROTOCOLS.md says: `data: <one-line JSON>\\n\\n`, `data: [DONE]\\n\\n` last.

No `event:` lines, no `:` comments or pings, no empty `data:` lines, no `\\r`. The JSON is ASCII
(json.dumps escapes newlines, control characters and every non-ASCII character), so no character
inside an event can look like a line break to any client's line splitter (str.splitlines also
splits on U+2028, U+0085, ...).

SSEResponse runs the event generator and watches for the client going away at the same time: when
it does, the generator is closed at once (its `finally` aborts the engine requests), instead of
waiting for the next write to fail.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

DONE = b"data: [DONE]\n\n"


def encode_event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n\n"


class SSEResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterator[bytes],
        headers: dict[str, str] | None = None,
    ):
        # Not Response.__init__: it would render an empty body and declare Content-Length: 0.
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self.headers["cache-control"] = "no-cache"
        self.headers["x-accel-buffering"] = "no"  # nginx: do not buffer the stream
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:

        async def stream() -> None:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return

        writer = asyncio.ensure_future(stream())
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({writer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, watcher):
                task.cancel()
            await asyncio.gather(writer, watcher, return_exceptions=True)
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                await aclose()
        if writer.done() and not writer.cancelled() and writer.exception() is not None:
            exc = writer.exception()
            # A write to a client that is gone is not our error; the generator's `finally` has
            # already aborted generation.
            if not (isinstance(exc, OSError) or type(exc).__name__ == "ClientDisconnect"):
                raise exc

"""A fault-injecting OpenAI-compatible completion server, for the upstream backend's tests.

`FakeUpstream.mode` picks what POST /v1/completions does:
  ok       streams `text` in pieces, then finish_reason and [DONE]
  slow     waits `delay` seconds before answering (or between pieces with slow_pieces)
  error500 answers 500 with an OpenAI error body
  error400 answers 400 naming a parameter (a feature this upstream lacks)
  drop     streams two pieces, then drops the connection (no [DONE], no finish)
  dropfirst answers 200, then drops the connection before any event
  garbage  answers 200 with bytes that are not server-sent events
  badjson  a `data:` line whose payload is not JSON
It records every request body it received (`bodies`), and /health follows `healthy`.
"""

from __future__ import annotations

import asyncio
import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class Dropped(Exception):
    pass


class FakeUpstream:
    def __init__(self, text: str = "    return 1\n\ndef g():\n    pass\n", pieces: int = 6):
        self.mode = "ok"
        self.text = text
        self.pieces = pieces
        self.delay = 0.0
        self.slow_pieces = False
        self.healthy = True
        self.bodies: list[dict] = []
        self.closed_early = 0  # streams our side closed before the end
        self.app = Starlette(
            routes=[
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/health", self.health),
                Route("/v1/models", self.models),
            ]
        )

    async def health(self, request: Request) -> Response:
        return Response(status_code=200 if self.healthy else 503)

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    def _split(self) -> list[str]:
        k = max(1, len(self.text) // self.pieces)
        return [self.text[i : i + k] for i in range(0, len(self.text), k)]

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        mode = self.mode
        if mode == "slow" and not self.slow_pieces:
            await asyncio.sleep(self.delay)
        if mode == "error500":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, status_code=500)
        if mode == "error400":
            return JSONResponse(
                {"error": {"message": "logprobs are not supported", "param": "logprobs", "code": None}},
                status_code=400,
            )
        n = body.get("n", 1)
        pieces = self._split()
        if not body.get("stream"):
            choices = [{"index": i, "text": self.text, "finish_reason": "length"} for i in range(n)]
            return JSONResponse({"id": "x", "object": "text_completion", "choices": choices})

        async def events():
            try:
                if mode == "dropfirst":
                    raise Dropped()  # the status line went out; the connection drops before any event
                if mode == "garbage":
                    yield b"<html>this is not an event stream</html>\n\n"
                    return
                if mode == "badjson":
                    yield b"data: {not json\n\n"
                    return
                for j, piece in enumerate(pieces):
                    if mode == "drop" and j == 2:
                        raise Dropped()
                    if mode == "slow" and self.slow_pieces:
                        await asyncio.sleep(self.delay)
                    last = j == len(pieces) - 1
                    choices = [
                        {"index": i, "text": piece, "finish_reason": "length" if last else None}
                        for i in range(n)
                    ]
                    yield f"data: {json.dumps({'id': 'x', 'choices': choices})}\n\n".encode()
                yield b"data: [DONE]\n\n"
            except (asyncio.CancelledError, GeneratorExit):
                self.closed_early += 1
                raise

        return StreamingResponse(events(), media_type="text/event-stream")

"""Tabby's completion over the engine: the segments become one FIM request (the snippets in front
of the prefix, models/fim.py render_context), the text comes back as `{id, choices: [{index, text}]}`.
Also /v1/health in Tabby's shape and the counting of /v1/events."""

from __future__ import annotations

import os
import platform
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from codecomplete import __version__
from codecomplete.api.completions.serving import CLIENT_CLOSED, ClientGone, resolve_model
from codecomplete.api.deps import check_ready
from codecomplete.api.errors import APIError
from codecomplete.api.generation import Generation
from codecomplete.api.metrics import ServerMetrics
from codecomplete.api.tabby.protocol import (
    EVENT_TYPES,
    LogEventRequest,
    TabbyChoice,
    TabbyCompletionRequest,
    TabbyCompletionResponse,
)
from codecomplete.engine.client import EngineClient
from codecomplete.engine.types import GenerationRequest
from codecomplete.models.fim import render_context
from codecomplete.settings import ServerSettings


def tabby_error(err: APIError) -> Response:
    """Tabby's server answers a bad request with a status and a plain-text reason (axum)."""
    return PlainTextResponse(err.message, status_code=err.status, headers=dict(err.headers))


class TabbyServing:
    def __init__(self, engine: EngineClient, settings: ServerSettings, metrics: ServerMetrics):
        self.engine = engine
        self.settings = settings
        self.metrics = metrics

    def build_request(self, req: TabbyCompletionRequest, request_id: str) -> tuple[GenerationRequest, str]:
        """The engine request and the prompt text (for `debug_options.return_prompt`)."""
        info = self.engine.model_info
        if req.mode != "standard":
            raise APIError.invalid("mode", f"mode {req.mode!r} is not supported (only 'standard')")
        raw_prompt = req.debug_options.raw_prompt if req.debug_options else None
        if raw_prompt is not None:
            prompt, suffix = raw_prompt, None  # passed to the model as is, as Tabby does
        elif req.segments is not None:
            seg = req.segments
            rag = not (req.debug_options and req.debug_options.disable_retrieval_augmented_code_completion)
            chunks = seg.chunks() if rag else []
            context = render_context(info.fim_template, chunks, filename=seg.filepath, language=req.language)
            prompt = context + seg.prefix
            suffix = seg.suffix or "\n"  # Tabby's server fills an empty suffix with a newline
        else:
            raise APIError.invalid("segments", "segments (or debug_options.raw_prompt) is required")
        gen = GenerationRequest(
            request_id=request_id,
            params=req.to_sampling_params(),
            prompt=prompt,
            suffix=suffix,
            model=resolve_model(self.engine, None),
        )
        return gen, prompt

    async def create(self, req: TabbyCompletionRequest, raw: Request) -> Response:
        check_ready(self.engine)
        request_id = f"cmpl-{uuid.uuid4().hex}"
        engine_request, prompt = self.build_request(req, request_id)
        gen = Generation(self.engine, self.metrics, engine_request).start()
        try:
            await gen.guard(raw, gen.first())
            text = await gen.guard(raw, gen.text())
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        await gen.done()
        debug = None
        if req.debug_options and req.debug_options.return_prompt:
            debug = {"prompt": prompt}
        body = TabbyCompletionResponse(
            id=request_id, choices=[TabbyChoice(index=0, text=text)], debug_data=debug
        )
        return JSONResponse(body.model_dump(exclude_none=True))

    def health(self) -> dict[str, Any]:
        """The fields tabby-agent reads: `model`, `device` (it warns about big models on "cpu"),
        `version.git_describe` (below 0.9.0 it skips fetching Tabby's server settings)."""
        info = self.engine.model_info
        device = self.settings.device
        return {
            "model": info.name,
            "device": device,
            "cuda_devices": [],
            "arch": platform.machine(),
            "cpu_info": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count() or 1,
            "version": {
                "build_date": "",
                "build_timestamp": "",
                "git_sha": "",
                "git_describe": __version__,
            },
            "webserver": False,
        }

    def log_event(self, event: LogEventRequest, select_kind: str | None) -> None:
        if event.type not in EVENT_TYPES:
            raise APIError.invalid(
                "type", f"type must be one of {', '.join(EVENT_TYPES)}, got {event.type[:40]!r}"
            )
        name = "select_line" if event.type == "select" and select_kind == "line" else event.type
        self.metrics.client_events.labels(client="tabby", event=name).inc()

"""Ollama's /api/generate over the engine, and the listing routes built from the served names.

Streaming is NDJSON (`application/x-ndjson`): one JSON object per line with `"done": false` and a
piece of `response`, then one with `"done": true`, `done_reason` and the statistics (durations in
nanoseconds: total, load 0, prompt eval = until the first engine output, eval = the rest, measured
at the API). An error after the 200 is one `{"error": "..."}` line, as Ollama sends it.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from codecomplete.api.completions.serving import CLIENT_CLOSED, ClientGone, resolve_model
from codecomplete.api.deps import check_ready
from codecomplete.api.errors import APIError, to_api_error
from codecomplete.api.generation import Generation
from codecomplete.api.metrics import ServerMetrics
from codecomplete.api.ollama.protocol import GenerateRequest, model_template
from codecomplete.api.sse import SSEResponse
from codecomplete.engine.client import EngineClient
from codecomplete.engine.types import GenerationRequest
from codecomplete.settings import ServerSettings

# The Ollama API level these routes follow (what /api/version reports; clients compare it).
OLLAMA_API_VERSION = "0.12.0"


def ollama_error(err: APIError) -> Response:
    return JSONResponse({"error": err.message}, status_code=err.status, headers=dict(err.headers))


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class NDJSONResponse(SSEResponse):
    """A streamed body of JSON lines, closed (and generation aborted) when the client goes away."""

    media_type = "application/x-ndjson"


class OllamaServing:
    def __init__(self, engine: EngineClient, settings: ServerSettings, metrics: ServerMetrics):
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.loaded_at = _now()

    # --- /api/generate ---------------------------------------------------------------------------

    def _check(self, req: GenerateRequest) -> None:
        s = self.settings
        req.check(
            max_tokens_limit=s.max_tokens_limit,
            max_stop=s.max_stop,
            fim_template=self.engine.model_info.fim_template,
        )

    def build_request(self, req: GenerateRequest, model: str) -> GenerationRequest:
        self._check(req)
        info = self.engine.model_info
        return GenerationRequest(
            request_id=f"ollama-{uuid.uuid4().hex}",
            params=req.to_sampling_params(info.context_length),
            prompt=req.prompt,
            # "" means none; a model without FIM tokens ignores it (the engine logs so at start).
            suffix=req.suffix or None,
            model=model,
        )

    async def generate(self, req: GenerateRequest, raw: Request) -> Response:
        check_ready(self.engine)
        model = resolve_model(self.engine, req.model)
        if req.is_load_only():
            self._check(req)
            body = {"model": model, "created_at": _now(), "response": "", "done": True, "done_reason": "load"}
            return NDJSONResponse(self._one(body)) if req.stream else JSONResponse(body)
        gen = Generation(self.engine, self.metrics, self.build_request(req, model)).start()
        try:
            await gen.guard(raw, gen.first())
            if req.stream:
                return NDJSONResponse(self._lines(gen, model))
            text = await gen.guard(raw, gen.text())
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        await gen.done()
        return JSONResponse(self._final(gen, model, text))

    @staticmethod
    async def _one(body: dict[str, Any]) -> AsyncIterator[bytes]:
        yield _line(body)

    def _final(self, gen: Generation, model: str, text: str) -> dict[str, Any]:
        prompt_ms, eval_ms = gen.timings_ms()
        return {
            "model": model,
            "created_at": _now(),
            "response": text,
            "done": True,
            "done_reason": gen.finish_reason or "stop",
            "total_duration": int((prompt_ms + eval_ms) * 1e6),
            "load_duration": 0,
            "prompt_eval_count": gen.prompt_tokens,
            "prompt_eval_duration": int(prompt_ms * 1e6),
            "eval_count": gen.completion_tokens,
            "eval_duration": int(eval_ms * 1e6),
        }

    async def _lines(self, gen: Generation, model: str) -> AsyncIterator[bytes]:
        completed = False
        try:
            try:
                async for piece in gen.deltas():
                    yield _line({"model": model, "created_at": _now(), "response": piece, "done": False})
            except Exception as exc:
                gen.outcome("error")
                yield _line({"error": to_api_error(exc).message})
                completed = True
                return
            yield _line(self._final(gen, model, ""))
            completed = True
            gen.outcome("ok")
        finally:
            if not completed:
                gen.outcome("cancelled")
            await gen.close()

    # --- listing ---------------------------------------------------------------------------------

    def _details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "safetensors",
            "family": "",
            "families": None,
            "parameter_size": "",
            "quantization_level": "",
        }

    def _entry(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": self.loaded_at,
            "size": 0,
            "digest": hashlib.sha256(name.encode("utf-8")).hexdigest(),
            "details": self._details(),
        }

    def tags(self) -> dict[str, Any]:
        info = self.engine.model_info
        return {"models": [self._entry(name) for name in info.served_names]}

    def show(self, requested: str) -> dict[str, Any]:
        info = self.engine.model_info
        name = resolve_model(self.engine, requested)
        capabilities = ["completion"] + (["insert"] if info.fim_template else [])
        template = model_template(info.fim_template)
        # Continue reads `num_ctx` from here, one `key value` per line (a line in any other shape
        # makes its parser throw, and it then never uses FIM).
        parameters = f"num_ctx {info.context_length}"
        return {
            "modelfile": f'FROM {name}\nTEMPLATE """{template}"""\nPARAMETER {parameters}\n',
            "parameters": parameters,
            "template": template,
            "details": self._details(),
            # Continue reads the context length from the key that ends in ".context_length".
            "model_info": {
                "general.architecture": "codecomplete",
                "general.basename": name,
                "codecomplete.context_length": info.context_length,
                "codecomplete.vocab_size": info.vocab_size,
            },
            "capabilities": capabilities,
            "modified_at": self.loaded_at,
        }

    def ps(self) -> dict[str, Any]:
        if not self.engine.health().ok:
            return {"models": []}
        info = self.engine.model_info
        forever = (
            datetime.fromtimestamp(time.time() + 10 * 365 * 86400, UTC).isoformat().replace("+00:00", "Z")
        )
        entry = self._entry(info.name) | {
            "expires_at": forever,
            "size_vram": 0,
            "context_length": info.context_length,
        }
        return {"models": [entry]}

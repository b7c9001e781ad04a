"""/infill and /props: an InfillRequest becomes one engine request (FIM through `suffix`, extra
chunks in front of the prefix), the text comes back in llama.cpp's response shape.

Numbers llama.cpp reports that the engine does not give per request are derived or measured here:
`timings` are measured at the API (prompt = until the first engine output, predicted = the rest);
`tokens_cached` is what the request held in the KV cache at the end (prompt + generated, as
llama.cpp's n_past); `timings.prompt_n` counts the whole prompt (prefix-cache reuse shows in
/metrics, `codecomplete_engine_prefix_cache_*`); `stop_type` is "limit" for a length, deadline or
n_indent end and "eos" for any other stop (a stop word is not told apart from EOS).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from codecomplete import __version__
from codecomplete.api.completions.serving import CLIENT_CLOSED, ClientGone, resolve_model
from codecomplete.api.deps import check_ready
from codecomplete.api.errors import APIError, to_api_error
from codecomplete.api.generation import Generation
from codecomplete.api.llamacpp.protocol import InfillRequest, indent_cut, llamacpp_error_body, select_fields
from codecomplete.api.metrics import ServerMetrics
from codecomplete.api.sse import SSEResponse, encode_event
from codecomplete.engine.client import EngineClient
from codecomplete.engine.types import GenerationRequest
from codecomplete.models.fim import render_context
from codecomplete.settings import ServerSettings


def llamacpp_error(err: APIError) -> Response:
    headers = dict(err.headers)
    return JSONResponse(llamacpp_error_body(err.status, err.message), status_code=err.status, headers=headers)


def _error_event(err: APIError) -> bytes:
    # llama.cpp's stream reports an error as an `error:` line (not `data:`), then ends.
    body = json.dumps(llamacpp_error_body(err.status, err.message), separators=(",", ":"))
    return b"error: " + body.encode("utf-8") + b"\n\n"


class InfillServing:
    def __init__(self, engine: EngineClient, settings: ServerSettings, metrics: ServerMetrics):
        self.engine = engine
        self.settings = settings
        self.metrics = metrics

    def build_request(self, req: InfillRequest, *, fim: bool) -> GenerationRequest:
        """/infill (fim): extra context + prefix + middle, FIM with the suffix; /completion: the
        prompt as is (Continue renders its own FIM template into it)."""
        info = self.engine.model_info
        s = self.settings
        req.check_limits(max_tokens_limit=s.max_tokens_limit, max_stop=s.max_stop, max_n=s.max_n)
        if fim:
            if info.fim_template is None:
                raise APIError(501, f"infill is not supported by this model ({info.name} has no FIM tokens)")
            prompt = render_context(info.fim_template, req.chunks()) + req.input_prefix + req.prompt
            suffix: str | None = req.input_suffix
        else:
            prompt, suffix = req.prompt, None
        return GenerationRequest(
            request_id=f"{'infill' if fim else 'cmpl'}-{uuid.uuid4().hex}",
            params=req.to_sampling_params(info.context_length),
            prompt=prompt,
            suffix=suffix,
            fim=True if fim else None,  # /infill is FIM even at the end of a file, as in llama.cpp
            model=resolve_model(self.engine, req.model),
        )

    async def create(self, req: InfillRequest, raw: Request, *, fim: bool = True) -> Response:
        check_ready(self.engine)
        gen = Generation(self.engine, self.metrics, self.build_request(req, fim=fim)).start()
        try:
            await gen.guard(raw, gen.first())
            if req.stream:
                return SSEResponse(self._events(gen, req))
            bodies = await gen.guard(raw, self._collect(gen, req))
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        await gen.done()
        selected = [select_fields(b, req.response_fields) for b in bodies]
        return JSONResponse(selected if req.n_cmpl > 1 else selected[0])

    async def _cut_pieces(self, gen: Generation, req: InfillRequest) -> AsyncIterator[tuple[int, str]]:
        """Each choice's text with llama.cpp's n_indent rule applied; generation stops once every
        choice is cut or finished."""
        texts: dict[int, str] = {}
        n = gen.request.params.n
        cut_choices: set[int] = set()
        async for index, piece in gen.pieces():
            text = texts.get(index, "")
            cut = indent_cut(text + piece, req.n_indent)
            if cut is not None:
                piece = (text + piece)[len(text) : cut]
                cut_choices.add(index)
                gen.finish_reasons[index] = "length"  # llama.cpp: stop_type "limit"
            texts[index] = text + piece
            if piece:
                yield index, piece
            if len(cut_choices) == n:
                return

    async def _collect(self, gen: Generation, req: InfillRequest) -> list[dict[str, Any]]:
        texts = [""] * gen.request.params.n
        async for index, piece in self._cut_pieces(gen, req):
            texts[index] += piece
        return [self.final_body(gen, text, index) for index, text in enumerate(texts)]

    def final_body(self, gen: Generation, text: str, index: int = 0) -> dict[str, Any]:
        prompt_ms, predicted_ms = gen.timings_ms()
        n_prompt = gen.prompt_tokens
        n_predicted = gen.choice_tokens.get(index, 0)
        return {
            "index": index,
            "content": text,
            "tokens": [],
            "id_slot": -1,
            "stop": True,
            "model": gen.request.model,
            "tokens_predicted": n_predicted,
            "tokens_evaluated": n_prompt,
            "has_new_line": "\n" in text,
            "truncated": gen.truncated,
            "stop_type": "limit" if gen.finish_reasons.get(index) == "length" else "eos",
            "stopping_word": "",
            "tokens_cached": n_prompt + n_predicted,
            "timings": {
                "prompt_n": n_prompt,
                "prompt_ms": prompt_ms,
                "prompt_per_token_ms": prompt_ms / n_prompt if n_prompt else 0.0,
                "prompt_per_second": 1000.0 * n_prompt / prompt_ms if prompt_ms > 0 else 0.0,
                "predicted_n": n_predicted,
                "predicted_ms": predicted_ms,
                "predicted_per_token_ms": predicted_ms / n_predicted if n_predicted else 0.0,
                "predicted_per_second": 1000.0 * n_predicted / predicted_ms if predicted_ms > 0 else 0.0,
            },
        }

    async def _events(self, gen: Generation, req: InfillRequest) -> AsyncIterator[bytes]:
        """`data: {...}` per piece of text with "stop": false, then each choice's full final object
        with "stop": true; no `[DONE]` (llama.cpp sends it only on its OpenAI routes)."""
        completed = False
        try:
            try:
                async for index, piece in self._cut_pieces(gen, req):
                    chunk = {
                        "index": index,
                        "content": piece,
                        "tokens": [],
                        "stop": False,
                        "id_slot": -1,
                        "tokens_predicted": gen.choice_tokens.get(index, 0),
                        "tokens_evaluated": gen.prompt_tokens,
                    }
                    yield encode_event(select_fields(chunk, req.response_fields))
            except Exception as exc:
                gen.outcome("error")
                yield _error_event(to_api_error(exc))
                completed = True
                return
            for index in range(gen.request.params.n):
                yield encode_event(select_fields(self.final_body(gen, "", index), req.response_fields))
            completed = True
            gen.outcome("ok")
        finally:
            if not completed:
                gen.outcome("cancelled")
            await gen.close()

    def props(self) -> dict[str, Any]:
        info = self.engine.model_info
        return {
            "default_generation_settings": {
                "n_ctx": info.context_length,
                "model": info.name,
                "params": {"n_predict": -1, "temperature": 0.8, "top_k": 40, "top_p": 0.95, "n_indent": 0},
            },
            "total_slots": self.settings.max_batch_size,
            "model_path": info.name,
            "model_alias": info.name,
            "modalities": {"vision": False, "audio": False},
            "infill": info.fim_template is not None,
            "fim_template": info.fim_template,
            "build_info": f"codecomplete {__version__}",
        }

"""One engine request with n choices; the texts in choice order."""

from __future__ import annotations

import uuid

from starlette.requests import Request

from codecomplete.api.autocomplete.protocol import AutocompleteRequest, AutocompleteResponse
from codecomplete.api.completions.serving import ClientGone, resolve_model, until_disconnect
from codecomplete.api.deps import check_ready
from codecomplete.api.errors import APIError, to_api_error
from codecomplete.api.metrics import ServerMetrics
from codecomplete.api.streams import OutputStream
from codecomplete.engine.client import EngineClient
from codecomplete.engine.types import GenerationRequest
from codecomplete.settings import ServerSettings


class AutocompleteServing:
    def __init__(self, engine: EngineClient, settings: ServerSettings, metrics: ServerMetrics):
        self.engine = engine
        self.settings = settings
        self.metrics = metrics

    async def create(self, req: AutocompleteRequest, raw: Request) -> AutocompleteResponse | None:
        """None when the client went away (generation aborted)."""
        if not req.text:
            # The old backend answered null here, which the plugin could not read.
            return AutocompleteResponse(result=[])
        check_ready(self.engine)
        if req.n > self.settings.max_n:
            raise APIError.invalid("n", f"n must be at most {self.settings.max_n} (--max-n)")
        gen = GenerationRequest(
            request_id=f"auto-{uuid.uuid4().hex}",
            params=req.to_sampling_params(),
            prompt=req.text,
            model=resolve_model(self.engine, None),
        )
        stream = OutputStream(self.engine, [gen]).start()
        try:
            texts = await until_disconnect(raw, self._collect(stream, req.n))
        except ClientGone:
            self.metrics.cancelled.inc()
            return None
        except BaseException:
            self.metrics.completions.labels(outcome="error").inc()
            raise
        finally:
            await stream.close()
        self.metrics.completions.labels(outcome="ok").inc()
        return AutocompleteResponse(result=texts)

    async def _collect(self, stream: OutputStream, n: int) -> list[str]:
        parts: list[list[str]] = [[] for _ in range(n)]
        async for event in stream:
            if event.exception is not None:
                raise to_api_error(event.exception)
            out = event.output
            if out.error is not None:
                raise APIError.from_engine(out.error)
            for d in out.choices:
                if 0 <= d.index < n and d.text:
                    parts[d.index].append(d.text)
                    if d.token_ids:
                        self.metrics.tokens_generated.inc(len(d.token_ids))
        return ["".join(p) for p in parts]

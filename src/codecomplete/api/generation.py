"""One engine request, read as text: what the editor protocols share.

llama.cpp's /infill, Ollama's /api/generate and Tabby's /v1/completions each ask for completions
of one prompt (one choice, or llama.vscode's `n_cmpl`). `Generation` runs it through the same OutputStream as the OpenAI routes (so a client
that goes away aborts generation at once), turns engine outputs into text deltas, keeps the numbers
those protocols report (token counts, timings, whether the prompt was truncated) and records the
request-level metrics. Each protocol's serving module frames the text in its own format.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from starlette.requests import Request

from codecomplete.api.completions.serving import ClientGone, until_disconnect
from codecomplete.api.metrics import ServerMetrics
from codecomplete.api.streams import Event, OutputStream
from codecomplete.engine.client import EngineClient
from codecomplete.engine.types import GenerationRequest

T = TypeVar("T")


class Generation:
    def __init__(self, engine: EngineClient, metrics: ServerMetrics, request: GenerationRequest):
        self.request = request
        self.metrics = metrics
        self.stream = OutputStream(engine, [request])
        self.started = time.perf_counter()
        self.first_output_at: float | None = None  # the prompt is processed (first event)
        self.first_text_at: float | None = None
        self.last_text_at: float | None = None
        self.finished_at: float | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.prompt_text: str | None = None  # the prompt as the engine fed it (after truncation)
        self.finish_reasons: dict[int, str] = {}
        self.choice_tokens: dict[int, int] = {}  # tokens generated per choice (as sent)
        self._pending: list[Event] = []
        self._outcome: str | None = None

    def start(self) -> Generation:
        self.stream.start()
        return self

    @property
    def truncated(self) -> bool:
        """The engine cut the prompt to fit the context (it reports the text it kept)."""
        sent = self.request.prompt
        return self.prompt_text is not None and sent is not None and self.prompt_text != sent

    async def first(self) -> None:
        """Wait for the first engine output: a full queue or a prompt the engine rejects raises
        here, before the caller has chosen a status (so it is a real 4xx, not an error in a 200)."""
        event = await self.stream.next()
        event.result()
        self._pending.append(event)

    async def pieces(self) -> AsyncIterator[tuple[int, str]]:
        """(choice index, text) as the engine sends it; `finish_reasons` fill in as choices end."""
        while self._pending or not (self.stream.all_finished and self.stream._queue.empty()):
            event = self._pending.pop(0) if self._pending else await self.stream.next()
            out = event.result()
            now = time.perf_counter()
            if self.first_output_at is None:
                self.first_output_at = now
                self.prompt_text = out.prompt_text
            if out.num_prompt_tokens and not self.prompt_tokens:
                self.prompt_tokens = out.num_prompt_tokens
                self.metrics.prompt_tokens.inc(out.num_prompt_tokens)
            self.completion_tokens = max(self.completion_tokens, out.num_generated_tokens)
            got_text = False
            for d in out.choices:
                if d.index in self.finish_reasons:
                    continue
                if d.token_ids:
                    self.metrics.tokens_generated.inc(len(d.token_ids))
                    self.choice_tokens[d.index] = self.choice_tokens.get(d.index, 0) + len(d.token_ids)
                if d.finish_reason is not None:
                    self.finish_reasons[d.index] = d.finish_reason
                if d.text:
                    got_text = True
                    yield d.index, d.text
            if got_text:
                # One observation per engine output (all choices of a step arrive together).
                if self.first_text_at is None:
                    self.first_text_at = now
                    self.metrics.ttft.observe(now - self.started)
                elif self.last_text_at is not None:
                    self.metrics.itl.observe(now - self.last_text_at)
                self.last_text_at = now
            if out.finished:
                break
        self.finished_at = time.perf_counter()
        for j in range(self.request.params.n):
            self.finish_reasons.setdefault(j, "length")

    @property
    def finish_reason(self) -> str | None:
        return self.finish_reasons.get(0)

    async def deltas(self) -> AsyncIterator[str]:
        """The text of choice 0, piece by piece."""
        async for index, piece in self.pieces():
            if index == 0:
                yield piece

    async def text(self) -> str:
        return "".join([piece async for piece in self.deltas()])

    def timings_ms(self) -> tuple[float, float]:
        """(prompt processing, generation) in milliseconds, as measured at the API."""
        end = self.finished_at or time.perf_counter()
        first = self.first_output_at or end
        return (first - self.started) * 1000.0, (end - first) * 1000.0

    def outcome(self, outcome: str) -> None:
        """Record how the request ended (once): "ok", "error" or "cancelled"."""
        if self._outcome is not None:
            return
        self._outcome = outcome
        self.metrics.completions.labels(outcome=outcome).inc()  # "cancelled" is metrics.cancelled too

    async def close(self) -> None:
        """Abort whatever still runs (the client went away, or the protocol cut the text)."""
        await self.stream.close()

    async def guard(self, raw: Request, work: Awaitable[T]) -> T:
        """Await `work` while watching the client. If the client goes away (ClientGone) or `work`
        raises, the request is closed and its outcome recorded ("cancelled" or "error") before the
        exception goes on to the caller, which answers it in its protocol's way."""
        try:
            return await until_disconnect(raw, work)
        except ClientGone:
            await self.close()
            self.outcome("cancelled")
            raise
        except BaseException:
            await self.close()
            self.outcome("error")
            raise

    async def done(self) -> None:
        """A non-streamed answer is complete: close the request and count it as "ok"."""
        await self.close()
        self.outcome("ok")

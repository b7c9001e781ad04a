"""A real EngineClient that yields scripted RequestOutputs: the API's tests need no model.

The default script is deterministic and easy to assert on: choice j of a request generates the
tokens "t0j", " t1j", " t2j", ... (one per step, all choices of a step in one output, as the
batching engine does), `max_tokens` of them, then finish_reason "length". With `echo` the first
output carries the prompt; with `logprobs` every token has logprob -(k+1)/10 and `logprobs`
alternatives. A request whose iterator is closed before its last output counts as cancelled,
like the real engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from codecomplete.engine.client import EngineClient, QueueFullError
from codecomplete.engine.types import (
    ChoiceDelta,
    EngineHealth,
    GenerationRequest,
    ModelInfo,
    RequestOutput,
    TokenLogprob,
)

Script = Callable[[GenerationRequest], AsyncIterator[RequestOutput]]


def token_text(k: int, j: int) -> str:
    return f"t{k}{j}" if k == 0 else f" t{k}{j}"


def prompt_of(request: GenerationRequest) -> str:
    if request.prompt is not None:
        return request.prompt
    return " ".join(str(t) for t in request.prompt_token_ids or [])


def prompt_logprobs_of(text: str, k: int) -> list[TokenLogprob | None]:
    words = text.split(" ")
    out: list[TokenLogprob | None] = [None]
    offset = len(words[0])
    for w in words[1:]:
        piece = " " + w
        out.append(TokenLogprob(piece, -0.5, {piece: -0.5, "alt": -1.5} if k else {}, offset))
        offset += len(piece)
    return out


async def default_script(request: GenerationRequest) -> AsyncIterator[RequestOutput]:
    p = request.params
    prompt = prompt_of(request)
    n_prompt = len(request.prompt_token_ids or prompt.split())
    steps = min(p.max_tokens, 64)
    texts = [""] * p.n
    first = RequestOutput(request.request_id, prompt_token_ids=list(range(n_prompt)), prompt_text=prompt)
    if p.echo and p.logprobs is not None:
        first.prompt_logprobs = prompt_logprobs_of(prompt, p.logprobs)
    if steps == 0:
        first.choices = [ChoiceDelta(index=j, finish_reason="length") for j in range(p.n)]
        first.finished = True
        first.num_prompt_tokens = n_prompt
        yield first
        return
    for k in range(steps):
        out = first if k == 0 else RequestOutput(request.request_id)
        for j in range(p.n):
            piece = token_text(k, j)
            lp = None
            if p.logprobs is not None:
                value = -(k + 1) / 10
                top = (
                    {piece: value, **{f"alt{a}": value - 1 - a for a in range(p.logprobs - 1)}}
                    if p.logprobs
                    else {}
                )
                lp = [TokenLogprob(piece, value, top, len(texts[j]))]
            texts[j] += piece
            last = k == steps - 1
            out.choices.append(
                ChoiceDelta(
                    index=j, text=piece, token_ids=[k], logprobs=lp, finish_reason="length" if last else None
                )
            )
        out.finished = k == steps - 1
        out.num_prompt_tokens = n_prompt
        out.num_generated_tokens = (k + 1) * p.n
        yield out


class FakeEngine(EngineClient):
    def __init__(
        self,
        script: Script = default_script,
        *,
        served_names: tuple[str, ...] = ("fake-model", "codegen"),
        vocab_size: int = 1000,
        context_length: int = 256,
        fim_template: str | None = "codecomplete",
        token_delay: float = 0.0,
        max_running: int | None = None,
        start_delay: float = 0.0,
    ):
        self.script = script
        self.token_delay = token_delay
        self.max_running = max_running
        self.start_delay = start_delay
        self._info = ModelInfo(
            name=served_names[0],
            served_names=list(served_names),
            context_length=context_length,
            vocab_size=vocab_size,
            fim_template=fim_template,
            created=int(time.time()),
        )
        self.started = False
        self.stopped = False
        self.healthy = True
        self.requests: list[GenerationRequest] = []
        self.running: set[str] = set()
        self.cancelled: list[str] = []
        self.tokens_generated = 0

    async def start(self) -> None:
        if self.start_delay:
            await asyncio.sleep(self.start_delay)
        self.model_info = self._info
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def generate(self, request: GenerationRequest) -> AsyncIterator[RequestOutput]:
        if self.max_running is not None and len(self.running) >= self.max_running:
            raise QueueFullError(retry_after=2.5)
        self.requests.append(request)
        self.running.add(request.request_id)
        return self._run(request)

    async def _run(self, request: GenerationRequest) -> AsyncIterator[RequestOutput]:
        finished = False
        try:
            async for out in self.script(request):
                await asyncio.sleep(self.token_delay)
                self.tokens_generated += sum(len(c.token_ids) for c in out.choices)
                finished = out.finished
                yield out
                if finished:
                    return
        finally:
            self.running.discard(request.request_id)
            if not finished and request.request_id not in self.cancelled:
                self.cancelled.append(request.request_id)

    async def abort(self, request_id: str) -> None:
        if request_id in self.running and request_id not in self.cancelled:
            self.cancelled.append(request_id)
        self.running.discard(request_id)

    def health(self) -> EngineHealth:
        ok = self.started and not self.stopped and self.healthy
        return EngineHealth(ok=ok, detail="ok" if ok else "not ready", running=len(self.running))

    def metrics(self) -> dict[str, float]:
        return {
            "queue_depth": 0,
            "running": len(self.running),
            "requests_cancelled_total": len(self.cancelled),
            "tokens_generated_total": self.tokens_generated,
            "prefix_cache_hit_rate": 0.0,
        }

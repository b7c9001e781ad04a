"""Turn a CompletionRequest into engine requests, and engine outputs into the OpenAI response.

One engine request per prompt (n choices each); choice index = prompt_index * n + j. The engine
sends DELTAS; here they are concatenated (non-streaming) or framed as SSE chunks (streaming).
Before the response status is sent we wait for every prompt's first engine output, so a full queue
or a prompt the engine rejects is a real 429/400 rather than an error inside a 200 stream.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from codecomplete.api.completions.debug import (
    CompletionDebug,
    PromptDecoder,
    cache_counters,
    prompt_debug,
)
from codecomplete.api.completions.protocol import (
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    Usage,
)
from codecomplete.api.deps import check_ready
from codecomplete.api.editor import (
    EditorKey,
    SupersedeRegistry,
    Ticket,
    deadline_s,
    is_single_line,
    priority,
)
from codecomplete.api.errors import CLIENT_CLOSED, APIError, to_api_error
from codecomplete.api.metrics import ServerMetrics
from codecomplete.api.sse import DONE, SSEResponse, encode_event
from codecomplete.api.streams import Event, OutputStream
from codecomplete.engine.client import EngineClient
from codecomplete.engine.indent import block_indent
from codecomplete.engine.types import ChoiceDelta, GenerationRequest, RequestOutput, TokenLogprob
from codecomplete.settings import ServerSettings

log = logging.getLogger("codecomplete.api")

T = TypeVar("T")


class ClientGone(Exception):
    pass


async def until_disconnect(raw: Request, work: Awaitable[T]) -> T:
    """Await `work`, but cancel it (and raise ClientGone) as soon as the client disconnects."""

    async def watch() -> None:
        while True:
            message = await raw.receive()
            if message["type"] == "http.disconnect":
                return

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
    if task.cancelled():
        raise ClientGone()
    return task.result()


def resolve_model(engine: EngineClient, requested: str | None) -> str:
    """The served name a request asked for, or the primary name for any other name (PROTOCOLS.md)."""
    info = engine.model_info
    if requested and requested in info.served_names:
        return requested
    return info.name


# --- logprobs formatting -------------------------------------------------------------------------


# JSON has no -Infinity (json.dumps would write an invalid token, JSONResponse would raise): a
# token with zero probability gets this floor instead, as vLLM does.
LOGPROB_FLOOR = -9999.0


def _finite(value: float) -> float:
    return value if math.isfinite(value) else LOGPROB_FLOOR


def _top(entry: TokenLogprob) -> dict[str, float]:
    if not entry.top:
        return {entry.token: _finite(entry.logprob)}
    return {token: _finite(value) for token, value in entry.top.items()}


def format_logprobs(entries: list[TokenLogprob], base_offset: int) -> CompletionLogprobs:
    """Generated tokens; engine offsets count from the completion's start, `base_offset` shifts them
    past an echoed prompt."""
    return CompletionLogprobs(
        tokens=[e.token for e in entries],
        token_logprobs=[_finite(e.logprob) for e in entries],
        top_logprobs=[_top(e) for e in entries],
        text_offset=[base_offset + e.text_offset for e in entries],
    )


def format_prompt_logprobs(entries: list[TokenLogprob | None], prompt_text: str) -> CompletionLogprobs:
    """Echoed prompt tokens. The first prompt token has no logprob (None), as in the OpenAI API."""
    out = CompletionLogprobs()
    for i, e in enumerate(entries):
        if e is None:
            nxt = next((x.text_offset for x in entries[i + 1 :] if x is not None), len(prompt_text))
            start = out.text_offset[-1] + len(out.tokens[-1]) if out.tokens else 0
            out.tokens.append(prompt_text[start:nxt])
            out.token_logprobs.append(None)
            out.top_logprobs.append(None)
            out.text_offset.append(start)
        else:
            out.tokens.append(e.token)
            out.token_logprobs.append(_finite(e.logprob))
            out.top_logprobs.append(_top(e))
            out.text_offset.append(e.text_offset)
    return out


def _extend(into: CompletionLogprobs, more: CompletionLogprobs) -> None:
    into.tokens += more.tokens
    into.token_logprobs += more.token_logprobs
    into.top_logprobs += more.top_logprobs
    into.text_offset += more.text_offset


def _merge_by_index(pieces: list[CompletionChoice]) -> list[CompletionChoice]:
    """One entry per choice index in a chunk (the echoed prompt and the first delta become one)."""
    if len({p.index for p in pieces}) == len(pieces):
        return pieces
    merged: dict[int, CompletionChoice] = {}
    for piece in pieces:
        prev = merged.get(piece.index)
        if prev is None:
            merged[piece.index] = piece
            continue
        lp = prev.logprobs
        if piece.logprobs is not None:
            lp = CompletionLogprobs(
                tokens=(lp.tokens if lp else []) + piece.logprobs.tokens,
                token_logprobs=(lp.token_logprobs if lp else []) + piece.logprobs.token_logprobs,
                top_logprobs=(lp.top_logprobs if lp else []) + piece.logprobs.top_logprobs,
                text_offset=(lp.text_offset if lp else []) + piece.logprobs.text_offset,
            )
        merged[piece.index] = CompletionChoice(
            text=prev.text + piece.text,
            index=piece.index,
            logprobs=lp,
            finish_reason=piece.finish_reason or prev.finish_reason,
        )
    return list(merged.values())


# --- per-request bookkeeping ---------------------------------------------------------------------


@dataclass
class _ChoiceState:
    text: list[str] = field(default_factory=list)
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None
    echo_len: int = 0  # characters of echoed prompt in front of the text
    held: str = ""  # with a deadline: the unfinished line after the first one, not sent yet


@dataclass
class _RequestState:
    """What one completion request has seen so far, across its prompts."""

    request: CompletionRequest
    n: int
    prompts: list[Any]
    started: float
    choices: dict[int, _ChoiceState] = field(default_factory=dict)
    prompt_tokens: dict[int, int] = field(default_factory=dict)
    completion_tokens: dict[int, int] = field(default_factory=dict)
    seen_first: set[int] = field(default_factory=set)
    first_text_seen: bool = False
    last_text_at: dict[int, float] = field(default_factory=dict)  # per prompt: inter-token latency
    # With `debug`: the first output's prompt per prompt index, when the first text came, and the
    # engine's prefix-cache counters before the request (debug.py).
    first_text_at: float | None = None
    prompt_seen: dict[int, tuple[str | None, list[int] | None]] = field(default_factory=dict)
    cache_before: tuple[int, int] | None = None
    # The budget given to the engine; with one, lines after the first are sent only when whole, so
    # a choice the budget cuts ends at a line boundary even though its text streamed (the engine
    # cuts at the last line boundary of what it has not sent yet; what was sent stays sent).
    deadline_s: float | None = None

    def whole_lines(self) -> bool:
        return self.deadline_s is not None and self.request.logprobs is None

    def out_of_time(self) -> bool:
        # The API received the request before the engine did: past the budget here when the engine
        # stopped for it (a max_tokens end in the same instant loses its unfinished line too).
        return self.deadline_s is not None and time.perf_counter() - self.started >= self.deadline_s

    def choice(self, index: int) -> _ChoiceState:
        return self.choices.setdefault(index, _ChoiceState())

    def usage(self) -> Usage:
        p, c = sum(self.prompt_tokens.values()), sum(self.completion_tokens.values())
        return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)

    def debug(self, engine: EngineClient, decoder: PromptDecoder | None) -> CompletionDebug:
        req, now = self.request, time.perf_counter()
        fim_template = engine.model_info.fim_template
        prompts = [
            prompt_debug(p, self.prompts[p], req.suffix, fim_template, text, ids, decoder)
            for p, (text, ids) in sorted(self.prompt_seen.items())
        ]
        completion = sum(self.completion_tokens.values())
        out = CompletionDebug(prompts=prompts, duration_s=now - self.started, completion_tokens=completion)
        if self.first_text_at is not None:
            out.ttft_s = self.first_text_at - self.started
            decoding = now - self.first_text_at
            if completion > 1 and decoding > 0:
                out.tokens_per_s = (completion - 1) / decoding
        after = cache_counters(engine.metrics() or {})
        if self.cache_before is not None and after is not None:
            out.prefix_cache_hits = after[0] - self.cache_before[0]
            out.prefix_cache_tokens_reused = after[1] - self.cache_before[1]
        return out


class CompletionServing:
    def __init__(
        self,
        engine: EngineClient,
        settings: ServerSettings,
        metrics: ServerMetrics,
        supersede: SupersedeRegistry | None = None,
        decoder: PromptDecoder | None = None,
    ):
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.supersede = supersede if supersede is not None else SupersedeRegistry(engine, enabled=False)
        self.decoder = decoder  # token ids -> text for `debug` (None: ids only)

    # --- request -> engine -----------------------------------------------------------------------

    def build_requests(
        self,
        req: CompletionRequest,
        request_id: str,
        model: str,
        *,
        speculative: bool = False,
        session_id: str | None = None,
    ) -> list[GenerationRequest]:
        s = self.settings
        req.check_limits(
            max_n=s.max_n, max_choices=s.max_choices, max_tokens_limit=s.max_tokens_limit, max_stop=s.max_stop
        )
        vocab = self.engine.model_info.vocab_size
        prompts = req.prompts()
        for p in prompts:
            # An id past the embedding table would crash the model step: a 500 for the whole batch.
            if isinstance(p, list) and p and max(p) >= vocab:
                raise APIError.invalid("prompt", f"token id {max(p)} is out of the vocabulary (size {vocab})")
        for key in req.logit_bias or {}:
            if int(key) >= vocab:
                raise APIError.invalid(
                    "logit_bias", f"token id {key} is out of the vocabulary (size {vocab})"
                )
        trim = req.extra is not None and req.extra.trim_by_indentation
        next_indent = req.extra.next_indent if req.extra is not None else None
        # api/editor.py: the client's budget or the server's; single-line requests go first.
        budget = deadline_s(s.completion_deadline_ms, req.deadline_ms)
        prio = priority(single_line=is_single_line(req.stop or []), speculative=speculative)
        out = []
        for i, p in enumerate(prompts):
            indent = block_indent(p, next_indent) if trim and isinstance(p, str) else None
            out.append(
                GenerationRequest(
                    request_id=f"{request_id}-{i}",
                    params=req.to_sampling_params(indent_trim=indent, deadline_s=budget, priority=prio),
                    prompt=p if isinstance(p, str) else None,
                    prompt_token_ids=p if isinstance(p, list) else None,
                    suffix=req.suffix,
                    model=model,
                    session_id=session_id,
                )
            )
        return out

    async def create(self, req: CompletionRequest, raw: Request, engine_name: str | None = None) -> Response:
        started = time.perf_counter()
        check_ready(self.engine)
        model = resolve_model(self.engine, engine_name or req.model)
        request_id = f"cmpl-{uuid.uuid4().hex}"
        prompts = req.prompts()
        # Superseding (api/editor.py): ghost text and the panel of one session are separate channels;
        # a request that asks for no budget (deadline_ms 0: an evaluation, a benchmark) is batch work,
        # never a keystroke.
        keystroke = len(prompts) == 1 and isinstance(prompts[0], str) and req.deadline_ms != 0
        key = EditorKey.of(
            raw,
            channel="completions:" + raw.headers.get("openai-intent", "").strip().lower()[:64],
            prompt=prompts[0] if keystroke else None,
        )
        gen_requests = self.build_requests(
            req, request_id, model, speculative=key.speculative, session_id=key.session_id
        )
        state = _RequestState(
            request=req,
            n=req.n,
            prompts=prompts,
            started=started,
            deadline_s=gen_requests[0].params.deadline_s,
        )
        if req.debug:
            state.cache_before = cache_counters(self.engine.metrics() or {})
        stream = OutputStream(self.engine, gen_requests)
        # Before the engine sees this request: what it supersedes is aborted first.
        ticket = await self.supersede.begin(
            key, [r.request_id for r in gen_requests], on_superseded=stream.supersede
        )
        stream.start()
        created = int(time.time())
        headers = {"x-request-id": raw.headers.get("x-request-id") or request_id}
        streaming = False
        try:
            if req.stream:
                # Wait for every prompt's first output (or its error) before choosing the status.
                first = await until_disconnect(raw, self._first_events(stream, len(gen_requests)))
                events = self._sse_events(stream, first, state, request_id, created, model, ticket)
                streaming = True
                return SSEResponse(events, headers=headers)
            body = await until_disconnect(raw, self._collect(stream, state, request_id, created, model))
            self.metrics.completions.labels(outcome="ok").inc()
            content = body.model_dump(mode="json")
            if body.debug is None:
                del content["debug"]  # the field exists only for clients that ask for it
            return JSONResponse(content, headers=headers)
        except ClientGone:
            await stream.close()
            self.metrics.cancelled.inc()
            return Response(status_code=CLIENT_CLOSED)
        except BaseException as exc:
            await stream.close()
            self.metrics.completions.labels(outcome=_outcome(exc)).inc()
            raise
        finally:
            if not streaming:
                ticket.close()

    # --- engine -> response ----------------------------------------------------------------------

    async def _first_events(self, stream: OutputStream, count: int) -> list[Event]:
        buffered: list[Event] = []
        seen: set[int] = set()
        while len(seen) < count:
            event = await stream.next()
            event.result()
            buffered.append(event)
            seen.add(event.prompt_index)
        return buffered

    async def _collect(
        self, stream: OutputStream, state: _RequestState, request_id: str, created: int, model: str
    ) -> CompletionResponse:
        async for event in stream:
            self._apply(state, event.prompt_index, event.result())
        choices = []
        for index in sorted(state.choices):
            c = state.choices[index]
            choices.append(
                CompletionChoice(
                    text="".join(c.text),
                    index=index,
                    logprobs=c.logprobs,
                    finish_reason=c.finish_reason or "length",  # type: ignore[arg-type]
                )
            )
        return CompletionResponse(
            id=request_id,
            created=created,
            model=model,
            choices=choices,
            usage=state.usage(),
            debug=state.debug(self.engine, self.decoder) if state.request.debug else None,
        )

    def _apply(self, state: _RequestState, p: int, out: RequestOutput) -> list[CompletionChoice]:
        """Fold one engine output into the request's state; return the pieces that are new."""
        req = state.request
        want_lp = req.logprobs is not None
        new: list[CompletionChoice] = []
        if p not in state.seen_first:
            state.seen_first.add(p)
            if req.debug:
                state.prompt_seen[p] = (out.prompt_text, out.prompt_token_ids)
            if req.echo:
                prompt = state.prompts[p]
                text = (
                    out.prompt_text
                    if out.prompt_text is not None
                    else (prompt if isinstance(prompt, str) else "")
                )
                lp = (
                    format_prompt_logprobs(out.prompt_logprobs, text)
                    if want_lp and out.prompt_logprobs
                    else None
                )
                for j in range(state.n):
                    c = state.choice(p * state.n + j)
                    c.text.append(text)
                    c.echo_len = len(text)
                    if want_lp:
                        c.logprobs = lp.model_copy(deep=True) if lp else CompletionLogprobs()
                    new.append(CompletionChoice(text=text, index=p * state.n + j, logprobs=lp))
        got_text = False
        for d in out.choices:
            index = p * state.n + d.index
            c = state.choice(index)
            if c.finish_reason is not None:
                continue  # a choice ends once (Copilot ignores everything after its finish_reason)
            if state.whole_lines():
                d = _whole_lines(c, d, cut=d.finish_reason == "length" and state.out_of_time())
            lp = format_logprobs(d.logprobs, c.echo_len) if want_lp and d.logprobs else None
            if want_lp:
                if c.logprobs is None:
                    c.logprobs = CompletionLogprobs()
                if lp is not None:
                    _extend(c.logprobs, lp)
            if d.text:
                c.text.append(d.text)
                got_text = True
            if d.token_ids:
                self.metrics.tokens_generated.inc(len(d.token_ids))
            c.finish_reason = d.finish_reason
            if d.text or d.finish_reason or (lp is not None and lp.tokens):
                new.append(
                    CompletionChoice(text=d.text, index=index, logprobs=lp, finish_reason=d.finish_reason)
                )
        if got_text:
            # One observation per engine output (all choices of a step arrive together).
            now = time.perf_counter()
            if not state.first_text_seen:
                state.first_text_seen = True
                state.first_text_at = now
                self.metrics.ttft.observe(now - state.started)
            elif p in state.last_text_at:
                self.metrics.itl.observe(now - state.last_text_at[p])
            state.last_text_at[p] = now
        if out.num_prompt_tokens:
            if p not in state.prompt_tokens:
                self.metrics.prompt_tokens.inc(out.num_prompt_tokens)
            state.prompt_tokens[p] = out.num_prompt_tokens
        state.completion_tokens[p] = max(state.completion_tokens.get(p, 0), out.num_generated_tokens)
        return _merge_by_index(new)

    async def _sse_events(
        self,
        stream: OutputStream,
        first: list[Event],
        state: _RequestState,
        request_id: str,
        created: int,
        model: str,
        ticket: Ticket | None = None,
    ) -> AsyncIterator[bytes]:
        include_usage = state.request.include_usage()

        def chunk(choices: list[CompletionChoice]) -> dict[str, Any]:
            body: dict[str, Any] = {
                "id": request_id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [c.model_dump(mode="json") for c in choices],
            }
            if include_usage:
                body["usage"] = None
            return body

        async def events() -> AsyncIterator[Event]:
            for event in first:
                yield event
            async for event in stream:
                yield event

        completed = False
        try:
            try:
                async for event in events():
                    new = self._apply(state, event.prompt_index, event.result())
                    if new:
                        yield encode_event(chunk(new))
            except Exception as exc:
                # An error after the 200: one error event, then [DONE] (PROTOCOLS.md).
                self.metrics.completions.labels(outcome=_outcome(exc)).inc()
                yield encode_event(to_api_error(exc).body())
                yield DONE
                completed = True
                return
            if include_usage or state.request.debug:
                final = chunk([])
                if include_usage:
                    final["usage"] = state.usage().model_dump()
                if state.request.debug:
                    final["debug"] = state.debug(self.engine, self.decoder).model_dump(mode="json")
                yield encode_event(final)
            yield DONE
            completed = True
            self.metrics.completions.labels(outcome="ok").inc()
        finally:
            if not completed:
                # The client went away mid-stream (or the server is stopping): abort generation.
                self.metrics.cancelled.inc()
            if ticket is not None:
                ticket.close()
            await stream.close()


def _whole_lines(c: _ChoiceState, d: ChoiceDelta, cut: bool) -> ChoiceDelta:
    """The part of `d` to send when lines after the first go out whole: the first line streams as
    it comes; after a line break, text is held from the last break until the next one (or the
    choice's end). `cut`: the budget ended the choice, so the held unfinished line is dropped and
    the text ends at its last line boundary."""
    text = c.held + d.text
    if d.finish_reason is not None:
        c.held = ""
        if cut and "\n" in text:  # (one unfinished line is kept whole, as the engine does)
            text = text[: text.rfind("\n")]
        return replace(d, text=text)
    if not c.held and "\n" not in d.text:
        return d  # still the first line
    k = text.rfind("\n")
    c.held = text[k:]
    return replace(d, text=text[:k])


def _outcome(exc: BaseException) -> str:
    """The metrics' outcome label of a request that ended with `exc`."""
    if isinstance(exc, APIError) and exc.code == "superseded":
        return "superseded"
    return "error"

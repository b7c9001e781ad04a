"""`--backend upstream`: forward completions to OpenAI-compatible servers (vLLM's, SGLang's,
llama.cpp's, TGI's, Ollama's /v1, or another codecomplete), keeping our side of the contract.

Our side builds the prompt (engine.inputs.prepare_prompt with `--model`'s tokenizer: the FIM
template, so `suffix` works on servers that reject it, context truncation, the generation reserve),
applies stop strings, trim-by-indentation and the deadline to the streamed text, and closes the
upstream stream as soon as a choice no longer needs it (client gone, trimmed, out of time).

Several `--upstream-url`s: a request goes to the upstream its editor session (or the start of its
file) hashes to, so one user's keystrokes reuse one upstream's prefix cache (others round-robin),
healthy ones first; a request whose upstream fails before any of its text reached us (connection
refused or dropped, a 5xx, a broken stream) is sent to the next one. A request that already streamed text is never replayed: it ends with an error
event. Health is probed in the background (GET /health, else /v1/models) and marked down at once
on a connection error; /health is 503 while no upstream is healthy.

Token healing needs the engine's logits: not available here (`unsupported`), and the server-wide
--token-healing is a logged no-op. Everything else is forwarded as the OpenAI API defines it; an
upstream that lacks a feature answers 4xx, which the client receives as is (status, message, param).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from codecomplete.engine.client import EngineClient, QueueFullError
from codecomplete.engine.inputs import PromptError, prepare_prompt
from codecomplete.engine.remote import ChoiceTracker, Deadline, PromptModel, load_prompt_model
from codecomplete.engine.types import (
    EngineError,
    EngineHealth,
    GenerationRequest,
    ModelInfo,
    RequestOutput,
    TokenLogprob,
)

log = logging.getLogger(__name__)


@dataclass
class UpstreamConfig:
    urls: list[str]
    """Base URLs of OpenAI-compatible servers (`http://host:8000` or `http://host:8000/v1`)."""
    model: str
    """The tokenizer / FIM family of the served model: a local folder (config + tokenizer files)."""
    served_names: list[str] = field(default_factory=list)
    """Names clients use (the first is primary); default: the model folder's name."""
    upstream_model: str | None = None
    """The `model` sent upstream; None: the first id of the upstream's /v1/models."""
    fim_template: str | None = None
    """Force a FIM template (models/fim.py); default: detected from the tokenizer."""
    prompt_format: Literal["text", "tokens"] = "text"
    """text: send the built prompt as text (every server); tokens: as token ids (vLLM, SGLang,
    llama.cpp, codecomplete): exactly the ids the local engine would feed."""
    timeout_s: float = 30.0
    """Longest wait for the upstream's next bytes (its first answer included) before the request
    fails over (nothing streamed yet) or ends with an error event."""
    connect_timeout_s: float = 3.0
    api_key: str | None = None
    """Sent upstream as `Authorization: Bearer <key>`."""
    max_queue: int = 256
    """Most requests in flight; beyond it generate() raises QueueFullError (HTTP 429)."""
    health_interval_s: float = 5.0

    def __post_init__(self) -> None:
        self.urls = [u.strip().rstrip("/") for u in self.urls if u.strip()]
        if not self.urls:
            raise ValueError(
                "--backend upstream needs at least one --upstream-url (CODECOMPLETE_UPSTREAM_URL)"
            )
        for u in self.urls:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"--upstream-url must start with http:// or https://, got {u!r}")
        if self.prompt_format not in ("text", "tokens"):
            raise ValueError("--upstream-prompt must be text or tokens")
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("--upstream-timeout must be > 0")


class UpstreamFailure(Exception):
    """This upstream failed this request; `retry` says whether another one may take it over."""

    def __init__(self, message: str, retry: bool = True, error: EngineError | None = None):
        super().__init__(message)
        self.retry = retry
        self.error = error


@dataclass
class Upstream:
    url: str  # without a trailing /v1
    healthy: bool = False
    detail: str = "not probed yet"
    requests: int = 0
    errors: int = 0


def _root(url: str) -> str:
    return url[: -len("/v1")] if url.endswith("/v1") else url


class UpstreamEngine(EngineClient):
    # Token healing drops the prompt's last token(s) and constrains the first generated ones: it
    # needs the logits, which an OpenAI-compatible server does not let us touch.
    unsupported = frozenset({"token_healing"})
    backend_name = "--backend upstream"

    def __init__(self, config: UpstreamConfig):
        self.config = config
        self.upstreams = [Upstream(url=_root(u)) for u in config.urls]
        self.prompts: PromptModel | None = None
        self.upstream_model = config.upstream_model
        self._client = None
        self._rr = itertools.count()
        self._health_task: asyncio.Task | None = None
        self._in_flight = 0
        self._started = False
        self._load_error = ""
        self.counters = {
            "upstream_requests_total": 0,
            "upstream_errors_total": 0,
            "upstream_retries_total": 0,
            "upstream_first_chunk_seconds_total": 0.0,
            "upstream_responses_total": 0,
            "requests_cancelled_total": 0,
            "requests_deadline_total": 0,
            "requests_finished_total": 0,
        }

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        import httpx

        cfg = self.config
        try:
            self.prompts = await asyncio.to_thread(load_prompt_model, cfg.model, cfg.fim_template)
        except Exception as exc:
            self._load_error = f"{type(exc).__name__}: {exc}"
            raise
        spec = self.prompts.spec
        names = cfg.served_names or [Path(cfg.model.rstrip("/")).name or cfg.model]
        self.model_info = ModelInfo(
            name=names[0],
            served_names=list(names),
            context_length=spec.context_length,
            vocab_size=spec.vocab_size,
            fim_template=self.prompts.fim_name,
            created=int(time.time()),
        )
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        await self._probe_all()
        self._health_task = asyncio.ensure_future(self._health_loop())
        self._started = True
        log.info(
            "upstream backend: %s (model %s, prompt as %s, FIM %s); token healing off (needs logits)",
            ", ".join(f"{u.url} ({'up' if u.healthy else 'down: ' + u.detail})" for u in self.upstreams),
            self.upstream_model or "from /v1/models",
            cfg.prompt_format,
            self.model_info.fim_template,
        )

    async def stop(self) -> None:
        self._started = False
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
            self._health_task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            with contextlib.suppress(Exception):
                await self._probe_all()

    async def _probe_all(self) -> None:
        await asyncio.gather(*(self._probe(u) for u in self.upstreams))

    async def _probe(self, up: Upstream) -> None:
        """GET /health (vLLM, SGLang, TGI, llama.cpp, codecomplete), else /v1/models (Ollama)."""
        try:
            r = await self._client.get(up.url + "/health", timeout=min(5.0, self.config.timeout_s))
            if r.status_code in (404, 405):
                r = await self._client.get(up.url + "/v1/models", timeout=min(5.0, self.config.timeout_s))
            up.healthy = r.status_code == 200
            up.detail = "ok" if up.healthy else f"HTTP {r.status_code}"
            if up.healthy and self.upstream_model is None:
                await self._resolve_model(up)
        except Exception as exc:
            up.healthy, up.detail = False, f"{type(exc).__name__}: {exc}".rstrip(": ")

    async def _resolve_model(self, up: Upstream) -> None:
        r = await self._client.get(up.url + "/v1/models", timeout=min(5.0, self.config.timeout_s))
        if r.status_code == 200:
            data = r.json().get("data") or []
            if data and isinstance(data[0], dict) and data[0].get("id"):
                self.upstream_model = str(data[0]["id"])

    # --- EngineClient ------------------------------------------------------------------------------

    def health(self) -> EngineHealth:
        if not self._started:
            return EngineHealth(ok=False, detail=self._load_error or "the upstream backend is starting")
        up = [u for u in self.upstreams if u.healthy]
        detail = "; ".join(f"{u.url}: {u.detail}" for u in self.upstreams)
        return EngineHealth(
            ok=bool(up),
            detail=f"{len(up)}/{len(self.upstreams)} upstreams healthy ({detail})",
            running=self._in_flight,
        )

    def metrics(self) -> dict[str, float]:
        return {
            "queue_depth": 0,
            "running": self._in_flight,
            "upstreams_healthy": sum(u.healthy for u in self.upstreams),
            "upstreams_configured": len(self.upstreams),
            **self.counters,
        }

    async def abort(self, request_id: str) -> None:
        # Closing the iterator (the API does it) closes the upstream stream: nothing else to do.
        return None

    def generate(self, request: GenerationRequest) -> AsyncIterator[RequestOutput]:
        if not self._started or self.prompts is None:
            raise RuntimeError("the upstream backend is not running")
        if self._in_flight >= self.config.max_queue:
            raise QueueFullError()
        return self._run(request)

    # --- one request -------------------------------------------------------------------------------

    def _body(self, request: GenerationRequest, prepared, stream: bool) -> dict[str, Any]:
        p = request.params
        spec = self.prompts.spec
        if request.prompt_token_ids is not None or self.config.prompt_format == "tokens":
            prompt: Any = list(prepared.token_ids)
        else:
            prompt = self.prompts.prompt_text(prepared.token_ids)
        body: dict[str, Any] = {
            "model": self.upstream_model or self.model_info.name,
            "prompt": prompt,
            "max_tokens": prepared.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "n": p.n,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if p.stop:
            body["stop"] = list(p.stop)  # the upstream stops early; our StopChecker has the last word
        for key in ("presence_penalty", "frequency_penalty"):
            if getattr(p, key):
                body[key] = getattr(p, key)
        if p.seed is not None:
            body["seed"] = p.seed
        if p.logit_bias:
            body["logit_bias"] = {str(k): v for k, v in p.logit_bias.items()}
        if p.logprobs is not None:
            body["logprobs"] = p.logprobs
        if p.best_of is not None and p.best_of > p.n:
            body["best_of"] = p.best_of
        if p.top_k:
            body["top_k"] = p.top_k  # vLLM, SGLang, llama.cpp, codecomplete
        if p.ignore_eos:
            body["ignore_eos"] = True
        if p.echo and p.logprobs is not None:
            body["echo"] = True  # the prompt's logprobs come from the upstream; plain echo is ours
        extra_stops = sorted(set(prepared.stop_token_ids) - set(spec.eos_token_ids))
        if extra_stops:
            body["stop_token_ids"] = extra_stops  # FIM end tokens that are not EOS (vLLM, SGLang)
        return body

    def _candidates(self, request: GenerationRequest) -> list[Upstream]:
        """The upstreams to try, in order: healthy ones first.

        A request with an affinity key (the editor session, else the start of the file) goes to
        the same upstream every time (rendezvous hashing), so one user's keystrokes reuse that
        upstream's prefix cache, and a dead upstream moves only its own keys; others round-robin.
        """
        key = affinity_key(request)
        if key is not None:
            ordered = sorted(
                self.upstreams,
                key=lambda u: hashlib.blake2b(f"{u.url}|{key}".encode(), digest_size=8).digest(),
            )
        else:
            start = next(self._rr) % len(self.upstreams)
            ordered = self.upstreams[start:] + self.upstreams[:start]
        return [u for u in ordered if u.healthy] + [u for u in ordered if not u.healthy]

    async def _run(self, request: GenerationRequest) -> AsyncIterator[RequestOutput]:
        rid = request.request_id
        self._in_flight += 1
        finished = False
        try:
            try:
                prepared = await asyncio.to_thread(
                    prepare_prompt, request, self.prompts.tokenizer, self.prompts.spec
                )
            except PromptError as e:
                finished = True
                yield RequestOutput(rid, error=e.error, finished=True)
                return
            p = request.params
            stream = not (p.best_of is not None and p.best_of > p.n)
            body = self._body(request, prepared, stream)
            choices = [ChoiceTracker(i, p) for i in range(p.n)]
            deadline = Deadline(p.deadline_s)
            first = RequestOutput(
                rid,
                prompt_token_ids=list(prepared.token_ids),
                prompt_text=prepared.text,
                num_prompt_tokens=len(prepared.token_ids),
            )
            if prepared.max_tokens == 0 and not body.get("echo"):
                # Nothing to generate (echo only, or a prompt that fills the context): no upstream call.
                finished = True
                first.choices = [c.add("", finish_reason="length") for c in choices]
                first.finished = True
                yield first
                return
            echo_len = len(body["prompt"]) if body.get("echo") and isinstance(body["prompt"], str) else None
            state = _StreamState(first=first, choices=choices, echo_len=echo_len)
            failures: list[tuple[Upstream, UpstreamFailure]] = []
            for attempt, up in enumerate(self._candidates(request)):
                if attempt:
                    self.counters["upstream_retries_total"] += 1
                    log.warning("%s: retrying on %s after: %s", rid, up.url, failures[-1][1])
                try:
                    async for out in self._attempt(up, body, stream, state, deadline):
                        finished = finished or out.finished
                        yield out
                    if not finished:  # every choice ended: the last event says so
                        finished = True
                        yield state.final_event()
                    return
                except UpstreamFailure as exc:
                    failures.append((up, exc))
                    if state.forwarded or not exc.retry:
                        break
            finished = True
            yield RequestOutput(rid, error=_summary(failures, state.forwarded), finished=True)
        finally:
            self._in_flight -= 1
            if finished:
                self.counters["requests_finished_total"] += 1
            else:
                self.counters["requests_cancelled_total"] += 1

    async def _attempt(
        self, up: Upstream, body: dict, stream: bool, state: _StreamState, deadline: Deadline
    ) -> AsyncIterator[RequestOutput]:
        import httpx

        up.requests += 1
        self.counters["upstream_requests_total"] += 1
        sent_at = time.perf_counter()
        timeout = self.config.timeout_s
        resp = None
        try:
            try:
                request = self._client.build_request("POST", up.url + "/v1/completions", json=body)
                resp = await _wait(self._client.send(request, stream=True), timeout, deadline)
            except _OutOfTime:
                for out in state.expire_all():
                    yield out
                self.counters["requests_deadline_total"] += 1
                return
            if resp.status_code != 200:
                raw = await _wait(resp.aread(), timeout, Deadline(None))
                raise _status_failure(resp.status_code, raw)
            up.healthy, up.detail = True, "ok"
            self.counters["upstream_responses_total"] += 1
            self.counters["upstream_first_chunk_seconds_total"] += time.perf_counter() - sent_at
            chunks = _sse_chunks(resp.aiter_lines()) if stream else _json_chunks(resp)
            while True:
                try:
                    chunk = await _wait(anext(chunks, None), timeout, deadline)
                except _OutOfTime:
                    for out in state.expire_all():
                        yield out
                    self.counters["requests_deadline_total"] += 1
                    return
                if chunk is None:
                    if not state.all_finished():
                        raise UpstreamFailure("the upstream closed the stream before the answer ended")
                    return
                for out in state.apply(chunk):
                    yield out
                if state.all_finished():
                    return  # the upstream stream is closed below (trimmed, stopped early)
        except UpstreamFailure as exc:
            self._failed(up, exc)
            raise
        except (httpx.TransportError, asyncio.TimeoutError) as exc:
            what = "timed out" if isinstance(exc, asyncio.TimeoutError | httpx.TimeoutException) else "failed"
            failure = UpstreamFailure(f"{up.url} {what}: {type(exc).__name__}: {exc}".rstrip(": "))
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                up.healthy, up.detail = False, str(failure)
            self._failed(up, failure)
            raise failure from exc
        finally:
            if resp is not None:
                with contextlib.suppress(Exception):
                    await resp.aclose()

    def _failed(self, up: Upstream, exc: UpstreamFailure) -> None:
        up.errors += 1
        self.counters["upstream_errors_total"] += 1
        log.warning("upstream %s: %s", up.url, exc)


def _summary(failures: list[tuple[Upstream, UpstreamFailure]], streamed: bool) -> EngineError:
    """The client's error: a 4xx an upstream gave as is; else 502 naming what each upstream did."""
    last = failures[-1][1]
    if last.error is not None and not last.retry:
        return last.error
    what = "; ".join(f"{up.url}: {exc}" for up, exc in failures)
    if streamed:
        message = f"the upstream failed mid-answer (not retried: text had streamed): {what}"
    else:
        message = f"no upstream could answer ({len(failures)} tried): {what}"
    busy = all(exc.error is not None and exc.error.status == 429 for _, exc in failures)
    return EngineError(
        message=message,
        type="server_overloaded" if busy else "server_error",
        code="upstream_busy" if busy else "upstream_error",
        status=429 if busy else 502,
    )


AFFINITY_CHARS = 256


def affinity_key(request: GenerationRequest) -> str | None:
    """The editor session (GenerationRequest.session_id), else the file: Copilot's prompts start
    with a `# Path: <file>` line; other prompts long enough that typing at their end leaves their
    head alone are keyed on their first AFFINITY_CHARS characters. None: no affinity."""
    if request.session_id:
        return "s:" + request.session_id
    prompt = request.prompt
    if prompt is None:
        return None
    first_line = prompt[: prompt.find("\n")] if "\n" in prompt else ""
    if "Path:" in first_line[:200]:
        return "f:" + first_line[:200]
    if len(prompt) >= 2 * AFFINITY_CHARS:
        return "p:" + prompt[:AFFINITY_CHARS]
    return None


class _OutOfTime(Exception):
    pass


async def _wait(awaitable, timeout: float, deadline: Deadline):
    """Await with the upstream timeout, or until the request's deadline (raises _OutOfTime)."""
    left = deadline.left()
    if left is not None and left < timeout:
        try:
            return await asyncio.wait_for(awaitable, left)
        except asyncio.TimeoutError:
            raise _OutOfTime() from None
    return await asyncio.wait_for(awaitable, timeout)


def _status_failure(status: int, raw: bytes) -> UpstreamFailure:
    try:
        err = json.loads(raw).get("error") or {}
        if isinstance(err, str):
            err = {"message": err}
    except Exception:
        err = {}
    message = str(err.get("message") or raw[:200].decode("utf-8", "replace") or f"HTTP {status}")
    if status >= 500 or status == 429:
        # Another upstream may well answer; if none does, the client sees 502 (or 429).
        return UpstreamFailure(
            f"HTTP {status}: {message}",
            retry=True,
            error=EngineError(
                message=f"the upstream answered {status}: {message}",
                type="server_overloaded" if status == 429 else "server_error",
                code="upstream_error",
                status=429 if status == 429 else 502,
            ),
        )
    # The request itself is wrong for this upstream (e.g. it lacks a feature): the client's 4xx.
    param = err.get("param") if isinstance(err.get("param"), str) else None
    return UpstreamFailure(
        f"HTTP {status}: {message}",
        retry=False,
        error=EngineError(
            message=f"the upstream rejected the request: {message}",
            type="invalid_request_error",
            param=param,
            code=err.get("code") if isinstance(err.get("code"), str) else "upstream_rejected",
            status=status if status != 409 else 400,
        ),
    )


async def _sse_chunks(lines: AsyncIterator[str]) -> AsyncIterator[dict]:
    async for line in lines:
        line = line.rstrip("\r")
        if not line or line.startswith(":") or line.startswith(("event:", "id:", "retry:")):
            continue
        if not line.startswith("data:"):
            raise UpstreamFailure(f"the upstream sent a line that is not server-sent events: {line[:80]!r}")
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise UpstreamFailure(f"the upstream sent an event that is not JSON: {data[:80]!r}") from None
        if not isinstance(chunk, dict):
            raise UpstreamFailure(f"the upstream sent an event that is not an object: {data[:80]!r}")
        if "error" in chunk:
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise UpstreamFailure(f"the upstream's stream failed: {message}")
        yield chunk


async def _json_chunks(resp) -> AsyncIterator[dict]:
    try:
        body = json.loads(await resp.aread())
    except ValueError:
        raise UpstreamFailure("the upstream's answer is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise UpstreamFailure("the upstream's answer has no choices")
    for c in body["choices"]:
        c.setdefault("finish_reason", "length")
    yield body


def _parse_logprobs(lp: Any) -> list[TokenLogprob | None] | None:
    """The OpenAI completions logprobs object -> entries (None where a logprob is null)."""
    if not isinstance(lp, dict) or not isinstance(lp.get("tokens"), list):
        return None
    tokens = lp["tokens"]
    values = lp.get("token_logprobs") or [None] * len(tokens)
    tops = lp.get("top_logprobs") or [None] * len(tokens)
    offsets = lp.get("text_offset") or [0] * len(tokens)
    out: list[TokenLogprob | None] = []
    for tok, val, top, off in zip(tokens, values, tops, offsets, strict=False):
        if val is None:
            out.append(None)
            continue
        out.append(
            TokenLogprob(
                token=str(tok),
                logprob=float(val),
                top={str(k): float(v) for k, v in (top or {}).items()},
                text_offset=int(off or 0),
            )
        )
    return out


@dataclass
class _StreamState:
    """One request's progress across upstream attempts (only the first ever forwards text)."""

    first: RequestOutput
    choices: list[ChoiceTracker]
    echo_len: int | None = None  # characters of echoed prompt the upstream puts in front (echo+logprobs)
    forwarded: bool = False  # some choice got text or ended: a retry would replay it
    first_sent: bool = False
    generated: int = 0
    echo_left: dict[int, int] = field(default_factory=dict)
    prompt_logprobs: list[TokenLogprob | None] = field(default_factory=list)

    def all_finished(self) -> bool:
        return all(c.finished for c in self.choices)

    def _event(self, deltas, finished: bool = False) -> RequestOutput:
        if not self.first_sent:
            out = self.first
            if self.echo_len is not None:
                out.prompt_logprobs = self.prompt_logprobs or None
            self.first_sent = True
        else:
            out = RequestOutput(self.first.request_id, num_prompt_tokens=self.first.num_prompt_tokens)
        out.choices = [d for d in deltas if d is not None]
        out.finished = finished
        out.num_generated_tokens = max(self.generated, sum(c.tokens for c in self.choices))
        return out

    def apply(self, chunk: dict) -> list[RequestOutput]:
        usage = chunk.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.generated = usage["completion_tokens"]
        deltas = []
        for c in chunk.get("choices") or []:
            if not isinstance(c, dict):
                raise UpstreamFailure("the upstream sent a choice that is not an object")
            i = c.get("index", 0)
            if not isinstance(i, int) or not 0 <= i < len(self.choices):
                raise UpstreamFailure(f"the upstream sent choice index {i!r} for n={len(self.choices)}")
            text = c.get("text") or ""
            if not isinstance(text, str):
                raise UpstreamFailure("the upstream sent a choice text that is not a string")
            entries = _parse_logprobs(c.get("logprobs"))
            if self.echo_len is not None:
                text, entries = self._strip_echo(i, text, entries)
            reason = c.get("finish_reason")
            # Text received is text that may have reached the client: never replayed elsewhere.
            self.forwarded = self.forwarded or bool(text) or bool(reason)
            deltas.append(
                self.choices[i].add(
                    text,
                    logprobs=[e for e in entries or [] if e is not None] or None,
                    finish_reason=reason if reason else None,
                )
            )
        out = self._event(deltas, finished=self.all_finished())
        return [out] if (out.choices or out.finished or out is self.first) else []

    def _strip_echo(self, i: int, text: str, entries):
        left = self.echo_left.setdefault(i, self.echo_len)
        if left <= 0:
            return text, entries
        cut = min(left, len(text))
        self.echo_left[i] = left - cut
        if entries is not None:
            prompt_entries = [e for e in entries if e is None or e.text_offset < self.echo_len]
            if i == 0 and not self.first_sent:
                self.prompt_logprobs.extend(prompt_entries)
            entries = [e for e in entries if e is not None and e.text_offset >= self.echo_len]
        return text[cut:], entries

    def expire_all(self) -> list[RequestOutput]:
        return [self._event([c.expire() for c in self.choices], finished=True)]

    def final_event(self) -> RequestOutput:
        return self._event([], finished=True)

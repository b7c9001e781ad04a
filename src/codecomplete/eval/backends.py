"""Where completions come from: a model folder loaded here (with transformers' `generate`, or with
this project's batching engine), or a running server over HTTP.

All answer the same two questions, so every task runs unchanged against either:
`complete(requests)` (text completions, with `suffix` for fill-in-the-middle) and
`prompt_logprobs(token_ids)` (for perplexity).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CompletionRequest:
    prompt: str
    max_tokens: int
    suffix: str | None = None
    """Text after the cursor: the request becomes fill-in-the-middle."""
    temperature: float = 0.0
    """0 is greedy."""
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    next_line: bool = False
    """The prompt ends at the end of a line and the completion that matters is the next line: a
    model folder stops generating once that line is written (see `next_line`); a server is not
    told (the OpenAI API has no such stop), it writes up to max_tokens and the client cuts."""


# Line breaks and blank lines at the start of a completion.
_BREAKS = re.compile(r"[ \t\r]*\n(?:[ \t\r]*\n)*")


def next_line(text: str) -> str | None:
    """The first non-blank line of a completion that starts with a line break (indentation kept),
    or None when the model did not start a new line (it went on writing the prompt's last line)."""
    m = _BREAKS.match(text)
    if m is None:
        return None
    return text[m.end() :].split("\n", 1)[0].rstrip("\r")


def next_line_done(text: str) -> bool:
    """Whether `next_line(text)` can no longer change as more text arrives."""
    m = _BREAKS.match(text)
    if m is None:
        return bool(text.strip(" \t\r"))  # text on the prompt's line: no new line is coming
    return "\n" in text[m.end() :]


@dataclass
class Completion:
    texts: list[str]
    """n completions, each cut at its first stop string."""
    prompt_tokens: int | None = None
    extra: dict = field(default_factory=dict)


class BackendError(RuntimeError):
    pass


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the first occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


class Backend(ABC):
    kind: str

    @abstractmethod
    def complete(self, requests: Sequence[CompletionRequest]) -> list[Completion]: ...

    @abstractmethod
    def prompt_logprobs(self, token_ids: Sequence[int]) -> list[float]:
        """log p(token_ids[i] | token_ids[:i]) for i = 1..len-1, in nats."""

    def prompt_logprobs_many(self, windows: Sequence[Sequence[int]]) -> list[list[float]]:
        return [self.prompt_logprobs(w) for w in windows]

    @abstractmethod
    def context_length(self) -> int | None: ...

    @abstractmethod
    def describe(self) -> dict: ...

    @abstractmethod
    def supports_fim(self) -> bool:
        """Whether a `suffix` is used (False: the model has no fill-in-the-middle tokens)."""

    def close(self) -> None:  # noqa: B027 -- optional: only the server backend holds connections
        pass


def generation_request(req: CompletionRequest, request_id: str):
    """The engine request for an eval request: what the server builds from the same body (a suffix,
    even an empty one, makes it fill-in-the-middle, as on the server)."""
    from codecomplete.engine.types import GenerationRequest, SamplingParams

    params = SamplingParams(
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p if req.temperature > 0 else 1.0,
        n=req.n,
        seed=req.seed,
        stop=list(req.stop),
    )
    return GenerationRequest(request_id=request_id, params=params, prompt=req.prompt, suffix=req.suffix)


# --- a model folder ----------------------------------------------------------------------------


class LocalBackend(Backend):
    """A Hugging Face model folder run with transformers on the CPU or a GPU (greedy or sampled
    `model.generate`, one prompt at a time: no padding effects on the scores)."""

    kind = "local"

    def __init__(
        self, model: str, device: str = "auto", dtype: str = "auto", fim_template: str | None = None
    ):
        import torch

        from codecomplete.models.loading import load_for_inference
        from codecomplete.models.registry import ModelSpec

        self._torch = torch
        if model.startswith(("/", "./", "../", "~")) and not os.path.isdir(os.path.expanduser(model)):
            raise FileNotFoundError(f"--model {model}: no such model folder")
        # The server's loader and model registry: the same device and dtype choice, context length,
        # EOS/FIM stop ids and FIM template as `codecomplete serve` (one copy, so no drift).
        self.model, self.tokenizer, self.device, torch_dtype = load_for_inference(model, device, dtype)
        self.model_path = model
        self.dtype = str(torch_dtype).removeprefix("torch.")
        self.spec = ModelSpec.from_pretrained(self.model.config, self.tokenizer, fim_template)
        self.tokenizer.model_max_length = 1 << 40  # whole files are encoded, then cut to the context
        self._ctx = self.spec.context_length
        self.fim = self.spec.fim
        self.stop_ids = sorted(set(self.spec.eos_token_ids + self.spec.fim_end_token_ids))
        eos_ids = self.spec.eos_token_ids
        self.pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (eos_ids or [0])[0]
        )

    def context_length(self) -> int | None:
        return self._ctx

    def describe(self) -> dict:
        return {
            "backend": self.kind,
            "model": os.path.abspath(self.model_path) if os.path.isdir(self.model_path) else self.model_path,
            "device": self.device,
            "dtype": self.dtype,
            "context_length": self._ctx,
            "fim_template": self.fim.name if self.fim else None,
            "vocab_size": len(self.tokenizer),
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }

    def supports_fim(self) -> bool:
        return self.fim is not None

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    def prepare(self, req: CompletionRequest):
        """The prompt exactly as the server builds it (engine/inputs.py `prepare_prompt`: context
        length, FIM truncation, generation reserve, max_tokens clamped to what fits). Without token
        healing: `generate` cannot re-type a healed tail (the tasks' prompts end at a line break or
        are FIM, which the server never heals, so they are the same)."""
        from codecomplete.engine.inputs import PromptError, prepare_prompt

        if req.suffix is not None and self.fim is None:
            raise BackendError(
                f"{self.model_path} has no fill-in-the-middle tokens; the fim task needs a FIM model "
                "(or name its template with --fim-template)"
            )
        try:
            return prepare_prompt(generation_request(req, "eval"), self.tokenizer, self.spec)
        except PromptError as e:
            raise BackendError(str(e)) from None

    def _generate(self, req: CompletionRequest) -> Completion:
        torch = self._torch
        from transformers import GenerationConfig

        prepared = self.prepare(req)
        ids, max_new = prepared.token_ids, max(1, prepared.max_tokens)
        stop_ids = sorted(prepared.stop_token_ids)  # EOS, and the FIM end tokens for FIM prompts
        gen = GenerationConfig(
            max_new_tokens=max_new,
            do_sample=req.temperature > 0,
            num_return_sequences=req.n,
            eos_token_id=stop_ids or None,
            pad_token_id=self.pad_id,
            stop_strings=list(req.stop) or None,
            **(
                {"temperature": req.temperature, "top_p": req.top_p, "top_k": 0}
                if req.temperature > 0
                else {}
            ),
        )
        extra = {"tokenizer": self.tokenizer} if req.stop else {}
        if req.next_line:
            extra["stopping_criteria"] = self._next_line_criteria(len(ids))
        if req.seed is not None:
            torch.manual_seed(req.seed)
        inp = torch.tensor([ids], device=self.device)
        with torch.no_grad():
            out = self.model.generate(
                inp, attention_mask=torch.ones_like(inp), generation_config=gen, **extra
            )
        texts = []
        for seq in out[:, len(ids) :].tolist():
            end = next((i for i, t in enumerate(seq) if t in prepared.stop_token_ids), len(seq))
            text = self.tokenizer.decode(seq[:end], skip_special_tokens=True)
            texts.append(cut_at_stop(text, req.stop))
        return Completion(texts, prompt_tokens=len(ids))

    def _next_line_criteria(self, prompt_len: int):
        from transformers import StoppingCriteria, StoppingCriteriaList

        torch, tokenizer = self._torch, self.tokenizer

        class NextLineDone(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):  # (B, T) -> (B,) bool
                texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
                return torch.tensor([next_line_done(t) for t in texts], device=input_ids.device)

        return StoppingCriteriaList([NextLineDone()])

    def complete(self, requests: Sequence[CompletionRequest]) -> list[Completion]:
        return [self._generate(r) for r in requests]

    def prompt_logprobs(self, token_ids: Sequence[int]) -> list[float]:
        return self.prompt_logprobs_many([token_ids])[0]

    def prompt_logprobs_many(self, windows: Sequence[Sequence[int]], batch: int = 8) -> list[list[float]]:
        """Windows of the same length go through the model together (no padding, so each
        window's scores are those it gets alone, up to float rounding)."""
        torch = self._torch
        out: list[list[float] | None] = [None] * len(windows)
        by_len: dict[int, list[int]] = {}
        for i, w in enumerate(windows):
            by_len.setdefault(len(w), []).append(i)
        for idx in by_len.values():
            for j in range(0, len(idx), batch):
                part = idx[j : j + batch]
                inp = torch.tensor([list(windows[i]) for i in part], device=self.device)  # (B, T)
                with torch.no_grad():
                    logits = self.model(inp).logits[:, :-1].float()  # (B, T-1, V)
                logp = torch.log_softmax(logits, dim=-1).gather(2, inp[:, 1:, None])[..., 0]
                for i, row in zip(part, logp.tolist(), strict=True):
                    out[i] = row
        return out  # type: ignore[return-value]


# --- a model folder through the serving engine ---------------------------------------------------


class EngineBackend(Backend):
    """A model folder run by codecomplete's own batching engine in this process (`--engine`).

    A task's requests go in together and are decoded in batches, the way `codecomplete serve` would
    decode them (same prompt preparation, FIM templates, stop strings, token healing), without
    starting a server; much faster than LocalBackend's one `generate` call at a time. A
    line-completion request is cancelled as soon as its next line is written. Greedy scores can
    differ from LocalBackend's where two tokens' logits differ in the last bits (another attention
    kernel), so compare a model's numbers across backends with care.
    """

    kind = "engine"
    chunk = 128  # requests handed over at a time: the engine keeps up to 32 decoding, refilled as they end

    def __init__(
        self,
        model: str,
        device: str = "auto",
        dtype: str = "auto",
        fim_template: str | None = None,
        max_batch_size: int = 32,
    ):
        from codecomplete.engine import EngineConfig, build_engine

        self.model_path = model
        config = EngineConfig(
            model=model, device=device, dtype=dtype, fim_template=fim_template, max_batch_size=max_batch_size
        )
        self._loop = asyncio.new_event_loop()
        self.engine = build_engine(config)
        self._loop.run_until_complete(self.engine.start())
        self.info = self.engine.model_info  # type: ignore[attr-defined]
        self.tokenizer = self.engine.core.tokenizer  # type: ignore[attr-defined]
        self._ids = itertools.count()

    def context_length(self) -> int | None:
        return self.info.context_length

    def describe(self) -> dict:
        return {
            "backend": "engine",
            "model": os.path.abspath(self.model_path),
            "device": str(self.engine.device),  # type: ignore[attr-defined]
            "dtype": str(self.engine.dtype).removeprefix("torch."),  # type: ignore[attr-defined]
            "context_length": self.info.context_length,
            "fim_template": self.info.fim_template,
            "vocab_size": self.info.vocab_size,
        }

    def supports_fim(self) -> bool:
        return self.info.fim_template is not None

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def eos_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    def complete(self, requests: Sequence[CompletionRequest]) -> list[Completion]:
        async def run_all() -> list[Completion]:
            return list(await asyncio.gather(*(self._one(r) for r in requests)))

        return self._loop.run_until_complete(run_all())

    async def _one(self, req: CompletionRequest) -> Completion:
        request = generation_request(req, f"eval-{next(self._ids)}")
        texts, prompt_tokens = [""] * req.n, 0
        stream = self.engine.generate(request)
        try:
            async for out in stream:
                if out.error is not None:
                    raise BackendError(f"the engine refused a request: {out.error.message}")
                prompt_tokens = out.num_prompt_tokens or prompt_tokens
                for choice in out.choices:
                    texts[choice.index] += choice.text
                if req.next_line and all(next_line_done(t) for t in texts):
                    break  # closing the stream below cancels the rest of the request
        finally:
            await stream.aclose()
        return Completion([cut_at_stop(t, req.stop) for t in texts], prompt_tokens=prompt_tokens)

    def prompt_logprobs(self, token_ids: Sequence[int]) -> list[float]:
        return self.prompt_logprobs_many([token_ids])[0]

    def prompt_logprobs_many(self, windows: Sequence[Sequence[int]]) -> list[list[float]]:
        from codecomplete.engine.types import GenerationRequest, SamplingParams

        async def score(ids: Sequence[int]) -> list[float]:
            params = SamplingParams(max_tokens=0, temperature=0.0, logprobs=0, echo=True)
            request = GenerationRequest(
                request_id=f"eval-{next(self._ids)}", params=params, prompt_token_ids=list(ids)
            )
            first = None
            async for out in self.engine.generate(request):
                if out.error is not None:
                    raise BackendError(f"the engine refused a window: {out.error.message}")
                if first is None:
                    first = out
            values = (first.prompt_logprobs if first else None) or []
            if len(values) != len(ids) or any(v is None for v in values[1:]):
                raise BackendError(
                    f"the engine scored {len(values)} of {len(ids)} tokens: pass a smaller --window"
                )
            return [v.logprob for v in values[1:]]

        async def run_all() -> list[list[float]]:
            return list(await asyncio.gather(*(score(w) for w in windows)))

        return self._loop.run_until_complete(run_all())

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self.engine.stop())
            self._loop.close()


# --- a running server ---------------------------------------------------------------------------


class ServerBackend(Backend):
    """Any OpenAI-compatible completions server (ours: `codecomplete serve`), over /v1/completions.

    Perplexity asks for the prompt's own log-probabilities: `echo: true, logprobs: 0,
    max_tokens: 0` with the token ids as the prompt. Servers that refuse `max_tokens: 0` are asked
    for one token instead, which is ignored.
    """

    kind = "server"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 600.0,
    ):
        try:
            import httpx
        except ImportError:
            raise BackendError("--base-url needs httpx: pip install 'codecomplete[eval]'") from None
        self._httpx = httpx
        base = base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[:-3]
        self.base_url = base
        self.concurrency = max(1, concurrency)
        self._client = httpx.Client(
            base_url=base,
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {api_key or 'codecomplete-eval'}"},
        )
        self._min_tokens = 0
        self._ctx: int | None = None
        listed = self._models()
        self.model = model or (listed[0]["id"] if listed else "default")
        entry = next((m for m in listed if m.get("id") == self.model), None)
        # codecomplete's /v1/models says whether `suffix` is used; other servers are taken at their word.
        self.fill_in_the_middle = (entry or {}).get("fill_in_the_middle", True) is not False
        # A codecomplete server gives every completion an editor's time budget unless the request
        # states its own: an evaluation waits for the whole answer (`deadline_ms: 0`).
        self._codecomplete = entry is not None and "fill_in_the_middle" in entry
        self.fim_template = (entry or {}).get("fim_template")
        for key in ("max_model_len", "context_length", "max_context_length"):
            if entry and isinstance(entry.get(key), int):
                self._ctx = entry[key]
                break

    def _models(self) -> list[dict]:
        try:
            r = self._client.get("/v1/models")
        except self._httpx.HTTPError as exc:
            raise BackendError(f"cannot reach {self.base_url}: {exc}") from exc
        if r.status_code != 200:
            return []
        data = r.json().get("data")
        return data if isinstance(data, list) else []

    def context_length(self) -> int | None:
        return self._ctx

    def describe(self) -> dict:
        return {
            "backend": self.kind,
            "base_url": self.base_url,
            "model": self.model,
            "context_length": self._ctx,
            "fim_template": self.fim_template,
        }

    def supports_fim(self) -> bool:
        return self.fill_in_the_middle

    def close(self) -> None:
        self._client.close()

    def _post(self, body: dict) -> dict:
        try:
            r = self._client.post("/v1/completions", json=body)
        except self._httpx.HTTPError as exc:
            raise BackendError(f"{self.base_url}/v1/completions: {exc}") from exc
        if r.status_code != 200:
            try:
                message = r.json()["error"]["message"]
            except Exception:
                message = r.text[:300]
            raise BackendError(f"{self.base_url}/v1/completions answered {r.status_code}: {message}")
        return r.json()

    def _one(self, req: CompletionRequest) -> Completion:
        body = {
            "model": self.model,
            "prompt": req.prompt,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "n": req.n,
        }
        if req.suffix is not None:
            body["suffix"] = req.suffix
        if req.stop:
            body["stop"] = list(req.stop)
        if req.seed is not None:
            body["seed"] = req.seed
        if self._codecomplete:
            body["deadline_ms"] = 0
        data = self._post(body)
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != req.n:
            raise BackendError(f"asked for n={req.n} completions, the server sent {len(choices)}")
        texts = [cut_at_stop(c.get("text") or "", req.stop) for c in choices]
        return Completion(texts, prompt_tokens=(data.get("usage") or {}).get("prompt_tokens"))

    def complete(self, requests: Sequence[CompletionRequest]) -> list[Completion]:
        # The server batches concurrent requests; keep a few in flight.
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._one, requests))

    def prompt_logprobs_many(self, windows: Sequence[Sequence[int]]) -> list[list[float]]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self.prompt_logprobs, windows))

    def prompt_logprobs(self, token_ids: Sequence[int]) -> list[float]:
        body = {
            "model": self.model,
            "prompt": list(token_ids),
            "echo": True,
            "logprobs": 0,
            "max_tokens": self._min_tokens,
            "temperature": 0,
        }
        try:
            data = self._post(body)
        except BackendError as exc:
            if body["max_tokens"] != 0 or "max_tokens" not in str(exc):
                raise
            self._min_tokens = 1  # this server wants at least one new token; it is ignored below
            return self.prompt_logprobs(token_ids)
        choice = (data.get("choices") or [{}])[0]
        values = (choice.get("logprobs") or {}).get("token_logprobs")
        if not values:
            raise BackendError(
                "the server returned no prompt logprobs for echo=true, logprobs=0: perplexity through "
                "--base-url needs a server that scores the prompt (or evaluate the model folder with --model)"
            )
        used = (data.get("usage") or {}).get("prompt_tokens")
        if (used is not None and used != len(token_ids)) or len(values) < len(token_ids):
            raise BackendError(
                f"the server scored {used if used is not None else len(values)} of {len(token_ids)} prompt "
                "tokens (it truncated the window): pass a smaller --window"
            )
        scored = values[1 : len(token_ids)]
        if any(v is None for v in scored):
            raise BackendError("the server returned null logprobs inside the prompt")
        return [float(v) for v in scored]


def build_backend(
    model: str | None = None,
    base_url: str | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    fim_template: str | None = None,
    served_model: str | None = None,
    api_key: str | None = None,
    concurrency: int = 8,
    engine: bool = False,
) -> Backend:
    """A model folder (`model`; through the batching engine with `engine`) or a server (`base_url`,
    or a `model` that is an http(s) URL)."""
    if model and model.startswith(("http://", "https://")):
        model, base_url = None, model
    if bool(model) == bool(base_url):
        raise ValueError("give exactly one of --model <folder> and --base-url <server url>")
    if base_url:
        if engine:
            raise ValueError("--engine runs a model folder (--model) in this process, not a server")
        return ServerBackend(base_url, model=served_model, api_key=api_key, concurrency=concurrency)
    if engine:
        return EngineBackend(model, device=device, dtype=dtype, fim_template=fim_template)
    return LocalBackend(model, device=device, dtype=dtype, fim_template=fim_template)

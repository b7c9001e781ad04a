"""The engine loop: one step = schedule, execute, update (vLLM's EngineCore.step).

Runs in its own thread (never the event loop). Requests arrive through a thread-safe inbox;
outputs leave through each request's `sink` callable (the async front end hands them to the
event loop). A failing model step ends only that step's requests, with an error event.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from collections.abc import Callable

import torch

from codecomplete.engine.client import QueueFullError
from codecomplete.engine.config import EngineConfig
from codecomplete.engine.detokenizer import IncrementalDetokenizer
from codecomplete.engine.healing import HealingState, TokenHealer
from codecomplete.engine.inputs import PromptError, prepare_prompt
from codecomplete.engine.output import OutputProcessor
from codecomplete.engine.prefix_cache import PrefixCache
from codecomplete.engine.runner import Batch, ModelRunner, PrefillRow
from codecomplete.engine.sampling import prompt_logprobs, sample
from codecomplete.engine.scheduler import Scheduler
from codecomplete.engine.sequence import RequestState, Sequence
from codecomplete.engine.speculate import PromptLookup
from codecomplete.engine.stopping import StopChecker
from codecomplete.engine.types import (
    EngineError,
    GenerationRequest,
    RequestOutput,
    TokenLogprob,
)
from codecomplete.models.registry import ModelSpec

log = logging.getLogger(__name__)
Sink = Callable[[RequestOutput], None]


# The exact check of a draft (SlotRunner.verify(exact=True)) attends once per drafted position,
# reading each row's cached keys and values again every time. Measured in one process on the
# bundled model (64 tokens, 128-token prompts, 1 thread, drafts of 4), time with drafts / without:
# a lone sampled request 0.48x at temperature 0.2 and 0.77x at 0.8, n=3 at 0.2 0.80x, but 4 rows
# 0.96x, 8 rows 1.12x and 16 rows 1.05x: beyond 3 sampled rows the plain step is cheaper.
EXACT_SPEC_MAX_ROWS = 3


class EngineCore:
    def __init__(self, model, tokenizer, spec: ModelSpec, config: EngineConfig, device):
        self.tokenizer = tokenizer
        self.spec = spec
        self.config = config
        pad = spec.eos_token_ids[0] if spec.eos_token_ids else 0
        self.runner = _build_runner(model, device, config, pad)
        self.invariant = _promises_invariance(config, device)
        self.scheduler = Scheduler(config.max_batch_size, config.max_step_tokens, config.max_queue)
        self.prefix_cache = PrefixCache(config.prefix_cache_mb * 2**20, config.prefix_min_tokens)
        # Token healing's vocabulary index is built on first use (or at load, see from_config).
        self.healer = TokenHealer(tokenizer, spec.vocab_size, config.token_healing_max_chars)
        self.batch: Batch | None = None
        self._inbox: deque[tuple[GenerationRequest, Sink, RequestState | None]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._live: dict[str, list[RequestState]] = {}
        self._aborted_early: set[int] = set()  # id() of inbox entries aborted before they started
        self._admitting = None  # the inbox entry being prepared (out of the inbox, not yet live)
        self._rng = random.Random(config.seed)
        self._next_seq = 0
        self.consecutive_failures = 0
        self.last_error = ""
        self.counters = dict.fromkeys(
            (
                "requests_total",
                "requests_finished_total",
                "requests_cancelled_total",
                "requests_failed_total",
                "prompt_tokens_total",
                "prompts_healed_total",
                "tokens_generated_total",
                "tokens_generated_after_cancel_total",
                "steps_total",
                "step_failures_total",
                "requests_failed_alone_total",
                "requests_deadline_total",
                "prefix_kv_kept_on_cancel_total",
                "spec_draft_tokens_total",
                "spec_accepted_tokens_total",
            ),
            0,
        )
        self.output = OutputProcessor(tokenizer, self.counters, self._finished, self._fail_request)

    @classmethod
    def from_config(cls, config: EngineConfig) -> EngineCore:
        """Load the model and tokenizer for `config` and build the core around them."""
        from codecomplete.engine import attention
        from codecomplete.models.loading import load_for_inference, resolve_device

        attn = config.attn_implementation
        if (
            attn in (None, "auto")
            and resolve_device(config.device) == "cpu"
            and config.batch_invariance != "off"
        ):
            attn = attention.register()  # batch-invariant on the CPU (docs/engine.md)
        elif attn == "rowwise":
            attn = attention.register()
        elif attn == "auto":
            attn = None
        try:
            model, tok, device, _ = load_for_inference(config.model, config.device, config.dtype, attn)
        except (ValueError, NotImplementedError, KeyError):
            if attn != attention.NAME or config.attn_implementation == "rowwise":
                raise
            # This family has its own attention code: keep its default.
            model, tok, device, _ = load_for_inference(config.model, config.device, config.dtype, None)
        if attn == attention.NAME and not getattr(model, "_supports_attention_backend", False):
            # The family has its own attention code, which would misread the boolean masks.
            model, tok, device, _ = load_for_inference(config.model, config.device, config.dtype, None)
        if _promises_invariance(config, device):
            attention.transpose_linear_weights(model)
        from codecomplete.engine import fast_decode

        fast_decode.fuse_activations(model)
        spec = ModelSpec.from_pretrained(model.config, tok, config.fim_template)
        core = cls(model, tok, spec, config, device)
        if config.token_healing:
            core.healer.index  # noqa: B018 - built now, while loading, not in the first request's step
        return core

    # --- called from other threads ----------------------------------------------------------

    def queue_depth(self) -> int:
        return len(self._inbox) + len(self.scheduler.waiting)

    def submit(self, request: GenerationRequest, sink: Sink) -> object:
        """Queue a request; returns a handle for abort_handle(). Raises QueueFullError."""
        with self._lock:
            if self.queue_depth() >= self.config.max_queue:
                raise QueueFullError()
            entry = (request, sink, None)
            self._inbox.append(entry)
            self.counters["requests_total"] += 1
        self._wake.set()
        return entry

    def abort(self, request_id: str) -> None:
        with self._lock:
            for entry in self._inbox:
                if entry[0].request_id == request_id:
                    self._abort_entry(entry)
            if self._admitting is not None and self._admitting[0].request_id == request_id:
                self._abort_entry(self._admitting)
            for req in self._live.get(request_id, []):
                self._abort_state(req)
        self._wake.set()

    def abort_handle(self, handle) -> None:
        with self._lock:
            self._abort_entry(handle)
            if handle is self._admitting:
                self._aborted_early.add(id(handle))
            for req in self._live.get(handle[0].request_id, []):
                if req.sink is handle[1]:
                    self._abort_state(req)
        self._wake.set()

    def _abort_entry(self, entry) -> None:
        if (entry in self._inbox or entry is self._admitting) and id(entry) not in self._aborted_early:
            self._aborted_early.add(id(entry))
            self.counters["requests_cancelled_total"] += 1

    def _abort_state(self, req: RequestState) -> None:
        if not req.aborted and not req.finished:
            req.aborted = True  # the loop drops it at the next step boundary
            self.counters["requests_cancelled_total"] += 1

    def wake(self) -> None:
        self._wake.set()

    def metrics(self) -> dict[str, float]:
        batch = self.batch
        m: dict[str, float] = dict(self.counters)
        m.update(
            queue_depth=self.queue_depth(),
            running=batch.rows if batch is not None else 0,
            running_requests=len(self.scheduler.running),
            prefix_cache_hit_rate=self.prefix_cache.hit_rate,
            prefix_cache_hits_total=self.prefix_cache.hits,
            prefix_cache_lookups_total=self.prefix_cache.lookups,
            prefix_cache_tokens_reused_total=self.prefix_cache.tokens_reused,
            prefix_cache_entries=len(self.prefix_cache),
            prefix_cache_bytes=self.prefix_cache.size,
        )
        return m

    # --- the loop ---------------------------------------------------------------------------

    def run(
        self,
        stop: threading.Event,
        after_step: Callable[[bool], None] | None = None,
        idle_s: float = 0.5,
    ) -> None:
        """Step until `stop` is set, waiting up to `idle_s` for work when there is none;
        `after_step(worked)` runs after every step (engine/process.py sends the step's outputs)."""
        while not stop.is_set():
            worked = self.step()
            if after_step is not None:
                after_step(worked)
            if not worked:
                self._wake.wait(timeout=idle_s)
                self._wake.clear()
        self.fail_all("the engine stopped")

    def step(self) -> bool:
        """One iteration. Returns False when there was nothing to do."""
        self._drain_inbox()
        if not self.scheduler.has_work():
            return False
        sched = self.scheduler.schedule(self._prefill_cost)
        for req in sched.aborted:
            self._release(req)
        self._evict()
        self.counters["steps_total"] += 1
        ok = True
        if self.batch is not None:
            ok = self._decode_step()
        if sched.chunk is not None:
            req, n = sched.chunk
            try:
                req.partial_kv = self.runner.extend(
                    req.partial_kv, req.prefilled, req.prompt_ids[req.prefilled : req.prefilled + n]
                )
                req.prefilled += n
            except Exception as exc:
                ok = False
                self.scheduler.waiting.remove(req)
                self._fail([req], exc)
        if sched.prefill:
            ok = self._prefill_step(sched.prefill) and ok
        if ok:
            self.consecutive_failures = 0
        self.output.emit()
        self._evict()
        return True

    # --- a failing forward pass is pinned on the requests that cause it ---------------------

    def _decode_step(self) -> bool:
        """Decode the running batch. When the batched forward raises, the rows that make it fail
        are found by bisection (each probe decodes a copy of some rows): only their requests end
        with an error and the rest of the batch goes on, with the same tokens as alone. Returns
        False for a failure nobody can be blamed for (the engine's health counts those)."""
        batch = self.batch
        if self._speculative_step(batch):
            return True
        try:
            logits = self.runner.decode(batch)
        except Exception as exc:
            culprits = self._culprit_rows(batch, exc)
            if culprits is None:
                self._fail(_requests_of(batch.seqs), exc)
                self.batch = None
                return False
            why = f"the model failed on it: {type(exc).__name__}: {exc}"
            for req in _requests_of([batch.seqs[r] for r in culprits]):
                self._fail_request(req, why)
            self._evict()
            if self.batch is None:
                return True
            batch = self.batch
            try:
                logits = self.runner.decode(batch)
            except Exception as exc2:
                self._fail(_requests_of(batch.seqs), exc2)
                self.batch = None
                return False
        self._update(batch, logits)
        return True

    def _speculative_step(self, batch) -> bool:
        """Rows check prompt-lookup drafts (engine/speculate.py) in one forward and keep the
        tokens up to the first the model disagrees with. Position j of every row is sampled and
        applied before position j + 1, exactly as plain steps would do it (penalties, bias,
        healing, stops, max_tokens), so a row draws one token per position from the same
        distribution and the same random stream as without drafts (sampling a token and keeping
        the draft when they agree is rejection sampling for a draft that is one token for sure).
        A sampled row, or a lone row with its ghost twin, needs the logits of plain steps to the
        bit (its seed must reproduce): that takes the runner's exact multi-token step, and where
        there is none only greedy batches speculate. Returns False when there is nothing worth
        checking, exactness cannot be had, or the forward fails: the plain step runs (and deals
        with a failure as always)."""
        k = self.config.speculative_tokens
        if not k or not hasattr(self.runner, "verify"):
            return False
        seqs = batch.seqs
        exact = self.invariant and (batch.ghost or not all(s.params.greedy for s in seqs))
        if exact and (len(seqs) > EXACT_SPEC_MAX_ROWS or not getattr(self.runner, "exact_verify", False)):
            return False
        pos = batch.pos.tolist()
        drafts = [self._draft(s, k, p) for s, p in zip(seqs, pos, strict=True)]
        width = _draft_width([len(d) for d in drafts])
        if not width:
            return False
        drafts = [d[:width] for d in drafts]
        try:
            logits = self.runner.verify(batch, drafts, exact=exact)  # (B, 1 + width, V)
        except Exception as exc:
            log.debug("speculative step failed (%s); decoding one token", exc)
            return False
        self.counters["spec_draft_tokens_total"] += sum(len(d) for d in drafts)
        fed = [0] * len(seqs)  # inputs whose KV is kept: the fed token and the accepted draft
        tokens = [0] * len(seqs)  # what each row feeds next
        active = list(range(len(seqs)))
        for j in range(width + 1):
            rows = [seqs[i] for i in active]
            res = sample(logits[active, j], rows)
            self.output.apply(rows, res.token_ids, res.logprobs, res.top, res.failed)
            still = []
            for i, token in zip(active, res.token_ids, strict=True):
                tokens[i], fed[i] = token, j + 1
                seq = seqs[i]
                # An abort (from another thread) mid-step stops the row at this token: at most
                # one token is made after a cancel, as with a plain step.
                if (
                    j < len(drafts[i])
                    and token == drafts[i][j]
                    and not seq.finished
                    and not seq.request.aborted
                ):
                    still.append(i)
            active = still
            if not active:
                break
        accepted = sum(fed) - len(seqs)
        self.counters["spec_accepted_tokens_total"] += accepted
        for s, d, n in zip(seqs, drafts, fed, strict=True):
            if d:
                s.lookup.record(len(d), n - 1, k)
        self.runner.accept(batch, fed, tokens)
        return True

    def _draft(self, seq: Sequence, k: int, pos: int) -> list[int]:
        """A prompt-lookup draft for one sequence, no longer than the positions left in the
        context and the tokens the request may still take (the fed token and the draft yield up
        to 1 + len(draft) tokens)."""
        if seq.finished:
            return []
        req = seq.request
        fed_before = len(req.prompt_ids)
        if seq.lookup is None:
            seq.lookup = PromptLookup(req.prompt_ids + seq.output_ids)
        elif seq.lookup.length < fed_before + len(seq.output_ids):
            seq.lookup.extend(seq.output_ids[seq.lookup.length - fed_before :])
        room = self.runner.context - pos - 1
        left = req.max_tokens - len(seq.output_ids) - 1
        return seq.lookup.propose(min(k, room, left))

    def _culprit_rows(self, batch: Batch, exc: Exception) -> list[int] | None:
        """Rows whose decoding fails on its own, or None when the failure cannot be pinned on
        some rows and not the others (one row; every row fails; no part fails alone)."""
        rows = list(range(batch.rows))
        if len(rows) < 2:
            return None
        log.warning(
            "batched decode failed (%s: %s); looking for the rows that cause it", type(exc).__name__, exc
        )
        bad = self._bisect(batch, rows)
        if not bad or len(bad) == len(rows):
            return None
        return bad

    def _bisect(self, batch: Batch, rows: list[int]) -> list[int]:
        """The rows of `rows` (which fail together) that fail without the others."""
        if len(rows) == 1:
            return rows
        bad: list[int] = []
        half = len(rows) // 2
        for part in (rows[:half], rows[half:]):
            try:
                self.runner.probe(batch, part)
            except Exception:
                bad += self._bisect(batch, part)
        return bad

    def _prefill_step(self, reqs: list[RequestState]) -> bool:
        """Prefill the requests joining this step. If their batched prefill raises, each is
        prefilled on its own: the ones that fail alone get the error, the others join."""
        try:
            new = self._prefill(reqs)
        except Exception as exc:
            if len(reqs) < 2:
                self._fail(reqs, exc)
                return False
            log.warning("batched prefill failed (%s: %s); prefilling one at a time", type(exc).__name__, exc)
            joined, failed = [], []
            first = self.batch.rows if self.batch is not None else 0
            for req in reqs:
                try:
                    joined.append(self._prefill([req], first))
                    first += joined[-1].rows
                except Exception as one:
                    failed.append((req, one))
            if not joined:  # every prompt fails alone: the model, not the requests
                self._fail(reqs, exc)
                return False
            for req, one in failed:
                self._fail_request(req, f"the model failed on it: {type(one).__name__}: {one}")
            new = self.runner.concatenate(joined) if len(joined) > 1 else joined[0]
        self.batch = new if self.batch is None else self.runner.concatenate([self.batch, new])
        return True

    def fail_all(self, message: str) -> None:
        with self._lock:
            entries = list(self._inbox)
            self._inbox.clear()
        for request, sink, _ in entries:
            sink(_error_output(request.request_id, message))
        live = list(self.scheduler.waiting) + list(self.scheduler.running)
        self.scheduler.waiting.clear()
        for req in live:
            self._send_error(req, message)
            self.scheduler.finish(req)
            self._forget(req)
        self.batch = None

    # --- step parts -------------------------------------------------------------------------

    def _drain_inbox(self) -> None:
        while self._inbox:
            with self._lock:
                entry = self._inbox.popleft()
                aborted = id(entry) in self._aborted_early
                self._aborted_early.discard(id(entry))
                # Out of the inbox, not yet live: an abort now is remembered on the entry (below).
                self._admitting = None if aborted else entry
            request, sink, _ = entry
            if aborted:
                sink(_cancelled_output(request.request_id))
                continue
            try:
                self._admit_entry(entry)
            finally:
                with self._lock:
                    self._admitting = None
                    self._aborted_early.discard(id(entry))

    def _admit_entry(self, entry) -> None:
        """Prepare one request taken from the inbox and make it live (errors go to its sink)."""
        request, sink, _ = entry
        try:
            req = self._admit(request, sink)
        except PromptError as exc:
            sink(RequestOutput(request.request_id, error=exc.error, finished=True))
            return
        except Exception as exc:
            log.exception("could not prepare request %s", request.request_id)
            sink(_error_output(request.request_id, f"could not prepare the prompt: {exc}"))
            return
        try:
            self.scheduler.add(req)
        except QueueFullError:
            sink(
                RequestOutput(request.request_id, error=EngineError("queue full", status=429), finished=True)
            )
            return
        with self._lock:
            self._live.setdefault(req.request_id, []).append(req)
            if id(entry) in self._aborted_early:  # aborted while its prompt was prepared
                req.aborted = True

    def _admit(self, request: GenerationRequest, sink: Sink) -> RequestState:
        p = request.params
        if p.num_sequences > self.config.max_batch_size:
            raise PromptError(
                EngineError(
                    f"n/best_of of {p.num_sequences} is more than this server's --max-batch-size "
                    f"({self.config.max_batch_size})",
                    type="invalid_request_error",
                    param="best_of" if (p.best_of or 0) > p.n else "n",
                    status=400,
                )
            )
        heal = self.config.token_healing if p.token_healing is None else p.token_healing
        # echo + logprobs scores the prompt as sent: its last token's logprob must be there.
        heal = heal and not (p.echo and p.logprobs is not None)
        prepared = prepare_prompt(request, self.tokenizer, self.spec, self.healer if heal else None)
        self.counters["prompt_tokens_total"] += len(prepared.token_ids)
        if prepared.healed is not None:
            self.counters["prompts_healed_total"] += 1
        return RequestState(
            request=request,
            prompt_ids=prepared.token_ids,
            prompt_text=prepared.text,
            max_tokens=prepared.max_tokens,
            stop_token_ids=prepared.stop_token_ids,
            sink=sink,
            healed=prepared.healed,
            room=prepared.room,
        )

    def _prefill_cost(self, req: RequestState) -> int:
        """Prompt tokens still to prefill. The first time a request is looked at, its prompt is
        matched against the prefix cache: a hit makes the cached tokens free."""
        if req.prefilled is None:
            n, kv = self.prefix_cache.lookup(req.prompt_ids) if req.chunkable else (0, None)
            req.prefilled, req.partial_kv, req.reused_prefix = n, kv, n
        return len(req.prompt_ids) - req.prefilled

    def _prefill(self, reqs: list[RequestState], first: int | None = None) -> Batch:
        """Prefill `reqs` into new rows (slots `first`, ... with the slot runner: after the
        running batch by default) and sample their first tokens."""
        if first is None:
            first = self.batch.rows if self.batch is not None else 0
        rows = []
        for req in reqs:
            n = req.prefilled or 0
            rows.append(
                PrefillRow(
                    req.prompt_ids, reuse=n, kv=req.partial_kv if n else None, full_logits=not req.chunkable
                )
            )
        batch, logits, full_logits = self.runner.prefill(rows, first=first)
        # Until the first tokens are applied nothing may stick: when this batch fails here,
        # _prefill_step prefills each request again on its own, and a request left holding this
        # attempt's sequences would wait for them forever (and its chunked prompt's KV is needed).
        seqs_before = [len(req.seqs) for req in reqs]
        try:
            batch = self._first_tokens(reqs, batch, logits, full_logits)
        except BaseException:
            for req, n in zip(reqs, seqs_before, strict=True):
                del req.seqs[n:]
            raise
        for req in reqs:
            req.partial_kv = None
        return batch

    def _first_tokens(self, reqs: list[RequestState], batch: Batch, logits, full_logits) -> Batch:
        """Cache the prompts, fork the n choices (the batch returned has a row per choice) and
        sample every sequence's first token."""
        if self.prefix_cache.enabled:
            for i, req in enumerate(reqs):
                if self._worth_caching(req, len(req.prompt_ids)):
                    kv = self.runner.prefix_kv(batch, i, len(req.prompt_ids))
                    self._cache_prefix(req.prompt_ids, kv, kept=False)
        for i, full in full_logits.items():
            reqs[i].prompt_logprobs = self._prompt_logprobs(reqs[i], full)
        fork = [i for i, req in enumerate(reqs) for _ in range(req.num_seqs)]
        if fork != list(range(len(reqs))):
            batch = self.runner.select(batch, fork)
            logits = logits[torch.tensor(fork, device=logits.device)]
        batch.seqs = [self._new_seq(reqs[i], j) for i, j in _choice_indices(reqs)]
        for seq in batch.seqs:
            if seq.request.max_tokens == 0:  # echo-only: nothing to generate
                seq.finished, seq.finish_reason = True, "length"
                self.output.touch(seq.request)
        self._update(batch, logits)
        return batch

    def _new_seq(self, req: RequestState, index: int) -> Sequence:
        p = req.request.params
        seed = (p.seed * 1_000_003 + index) % 2**63 if p.seed is not None else self._rng.getrandbits(63)
        self._next_seq += 1
        seq = Sequence(seq_id=self._next_seq, request=req, index=index, seed=seed)
        seq.detok = IncrementalDetokenizer(self.tokenizer, req.prompt_ids)
        seq.stopper = StopChecker(p.stop, p.indent_trim)
        if req.healed is not None:
            seq.healing = HealingState(self.healer.index, req.healed)
        req.seqs.append(seq)
        return seq

    def _update(self, batch: Batch, logits: torch.Tensor) -> None:
        """Sample every row, then apply the tokens (torch-free, engine/output.py)."""
        res = sample(logits, batch.seqs)
        self.output.apply(batch.seqs, res.token_ids, res.logprobs, res.top, res.failed)
        batch.set_next(res.token_ids)

    def _fail_request(self, req: RequestState, why: str) -> None:
        """One request's own failure: it alone ends with an error; the rest of the batch goes on
        and the engine's health is untouched (the failure is attributed to this request)."""
        if req.finished:
            return
        log.warning("request %s failed: %s", req.request_id, why)
        self.counters["requests_failed_alone_total"] += 1
        for s in req.seqs:
            s.finished = True
        if not req.aborted:
            self._send_error(req, f"generation failed for this request: {why}")
        self.scheduler.finish(req)
        self._forget(req)
        self.output.forget(req)

    def _finished(self, req: RequestState) -> None:
        self.scheduler.finish(req)
        self._forget(req)

    def _evict(self) -> None:
        """Finished, stopped and cancelled sequences leave the batch (and free their KV) now."""
        if self.batch is None:
            return
        keep = [i for i, s in enumerate(self.batch.seqs) if not s.finished and not s.request.aborted]
        if not keep:
            self.batch = None
        elif len(keep) < self.batch.rows or (
            len(keep) == 1 and not self.batch.ghost and self._wants_ghost(keep[0])
        ):
            self.batch = self.runner.drop(self.batch, keep, ghost=self._wants_ghost(keep[0]))

    def _wants_ghost(self, row: int) -> bool:
        """A lone sampled sequence runs with a ghost row so its logits have the same bits as in
        any batch (its seed then reproduces exactly). A lone greedy one runs as a single row (a
        GEMV, measured ~30% faster at batch 1 on the CPU): its logits may differ in the last bit
        from a batched run, which an argmax practically never notices (tests/engine checks the
        tokens). batch_invariance="strict" gives every lone sequence its ghost."""
        mode = self.config.batch_invariance
        if mode == "off":
            return False
        return mode == "strict" or not self.batch.seqs[row].params.greedy

    def _release(self, req: RequestState) -> None:
        """An aborted request leaves. Its client is normally gone; a reader still iterating gets
        one last event so it never waits forever."""
        try:
            self._keep_kv(req)
        except Exception:  # reuse is an optimisation: never let it fail a cancellation
            log.exception("could not keep the KV of cancelled request %s", req.request_id)
        req.finished = True
        for s in req.seqs:
            s.finished = True
        self._forget(req)
        req.sink(_cancelled_output(req.request_id))

    def _keep_kv(self, req: RequestState) -> None:
        """Keystrokes: an editor cancels the previous request on every key, and the next prompt is
        that one plus a few characters. What a cancelled request had computed (the chunks of a long
        prompt not yet finished; the prompt plus the tokens it generated) goes into the prefix
        cache, so the next request starts from it."""
        if not self.prefix_cache.enabled:
            return
        if not req.seqs:  # cancelled while its prompt was being prefilled in chunks
            n = req.prefilled or 0
            if req.partial_kv is not None and n > req.reused_prefix:
                kv = [(k[:, :, :n].clone(), v[:, :, :n].clone()) for k, v in req.partial_kv]
                self._cache_prefix(req.prompt_ids[:n], kv)
            return
        batch = self.batch
        seq = req.seqs[0]
        if batch is None or seq not in batch.seqs:
            return
        row = batch.seqs.index(seq)
        cached = int(batch.pos[row])  # tokens whose KV the row holds: prompt + fed tokens
        if cached > len(req.prompt_ids) and self._worth_caching(req, cached):
            ids = (req.prompt_ids + seq.output_ids)[:cached]
            self._cache_prefix(ids, self.runner.prefix_kv(batch, row, cached))

    def _worth_caching(self, req: RequestState, length: int) -> bool:
        """Whether the KV of `req`'s first `length` tokens is worth a new prefix-cache entry (a copy
        of all of it): only when it extends the prefix the request reused by prefix_min_tokens or
        more. A keystroke's prompt is the last one plus a few characters: the next keystroke reuses
        the same entry and prefills a few more tokens, which costs the same as one (the step reads
        all the weights either way)."""
        return length - req.reused_prefix >= self.prefix_cache.min_tokens

    def _cache_prefix(self, ids: list[int], kv, kept: bool = True) -> None:
        if len(ids) >= self.prefix_cache.min_tokens:
            size = sum(k.numel() * k.element_size() * 2 for k, _ in kv)
            self.prefix_cache.insert(ids, kv, size)
            self.counters["prefix_kv_kept_on_cancel_total"] += kept

    def _forget(self, req: RequestState) -> None:
        with self._lock:
            lst = self._live.get(req.request_id, [])
            if req in lst:
                lst.remove(req)
            if not lst:
                self._live.pop(req.request_id, None)

    def _fail(self, reqs, exc: Exception) -> None:
        log.exception("model step failed", exc_info=exc)
        self.counters["step_failures_total"] += 1
        self.consecutive_failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        for req in list(reqs):
            if req.finished:
                continue
            for s in req.seqs:
                s.finished = True
            if not req.aborted:
                self._send_error(req, f"generation failed: {self.last_error}")
            self.scheduler.finish(req)
            self._forget(req)
            self.output.forget(req)

    def _send_error(self, req: RequestState, message: str) -> None:
        self.counters["requests_failed_total"] += 1
        req.sink(_error_output(req.request_id, message))

    def _prompt_logprobs(self, req: RequestState, logits: torch.Tensor) -> list[TokenLogprob | None]:
        ids = req.prompt_ids
        out: list[TokenLogprob | None] = [None]
        offset = 0
        first = self.output.piece(ids[0])
        offset += len(first)
        for tok, (lp, top) in zip(
            ids[1:], prompt_logprobs(logits, ids, req.request.params.logprobs or 0), strict=False
        ):
            piece = self.output.piece(tok)
            out.append(TokenLogprob(piece, lp, {self.output.piece(t): v for t, v in top}, offset))
            offset += len(piece)
        return out


def _build_runner(model, device, config: EngineConfig, pad: int):
    """The slot runner (static KV cache, engine/slot_runner.py) for the families it supports,
    the dynamic-cache ModelRunner for the others, when asked for (kv_cache="dynamic") or when an
    attention implementation is forced (the slot runner brings its own)."""
    from codecomplete.engine import slot_runner

    auto = config.kv_cache == "auto" and config.attn_implementation in (None, "auto")
    if (auto or config.kv_cache == "slots") and slot_runner.supports(model):
        compile = _wants_compile(config.compile)
        runner = slot_runner.SlotRunner(model, device, config.max_batch_size, pad_id=pad, compile=compile)
        log.info(
            "static KV cache: %d slots x %d positions, %.0f MiB; decode step: %s",
            config.max_batch_size,
            runner.context,
            runner.bytes / 2**20,
            "the model's forward"
            if runner.fast is None
            else ("compiled (torch.compile)" if compile else "fast_decode.py, not compiled"),
        )
        if compile and runner.fast is not None:
            seconds = runner.fast.warm_up()
            if runner.fast.failed is None:
                log.info("decode step compiled and warm in %.1f s", seconds)
        elif compile:
            log.info(
                "--compile: the %s family has no fast decode step; not compiled", model.config.model_type
            )
        return runner
    if config.kv_cache == "slots":
        raise ValueError(
            f"--kv-cache slots does not support the {model.config.model_type} family "
            f"(supported: {', '.join(slot_runner.SUPPORTED)})"
        )
    return ModelRunner(model, device, pad_id=pad)


def _promises_invariance(config: EngineConfig, device) -> bool:
    """Bit-identical logits alone or in any batch are promised on the CPU unless turned off
    (docs/engine.md, Batch invariance)."""
    return str(device) == "cpu" and config.batch_invariance != "off"


def _wants_compile(setting: str) -> bool:
    """--compile auto|on|off. auto is off for now, on every device: on the CPU compiling takes
    19-52 s of a small machine's start for ~1 ms a step (measured, docs/engine.md), and the CUDA
    graphs of `--compile on` have not yet run on a GPU. (Before 2026-12-03 auto was on for CUDA with
    static shapes, which recompiled for every attention width and then ran uncompiled: measured
    on the CPU.) Measured on a GPU, auto can turn CUDA graphs on there."""
    return setting == "on"


def _draft_width(lengths: list[int]) -> int:
    """Draft tokens per row in a speculative step: every row pays for the longest draft kept
    (the forward is rectangular), so keep the longest width that at least half of the rows fill.
    0: too few drafts to be worth a wider forward."""
    half = (len(lengths) + 1) // 2
    width = 0
    while sum(n > width for n in lengths) >= half:
        width += 1
    return width


def _requests_of(seqs) -> list[RequestState]:
    """The distinct requests of some sequences, in order."""
    return list({id(s.request): s.request for s in seqs}.values())


def _choice_indices(reqs: list[RequestState]):
    for i, req in enumerate(reqs):
        for j in range(req.num_seqs):
            yield i, j


def _cancelled_output(request_id: str) -> RequestOutput:
    error = EngineError("the request was cancelled", type="cancelled", code="cancelled", status=499)
    return RequestOutput(request_id, error=error, finished=True)


def _error_output(request_id: str, message: str) -> RequestOutput:
    return RequestOutput(request_id, error=EngineError(message=message), finished=True)

"""Applying a step's sampled tokens to the requests: the torch-free half of `EngineCore.step`.

`step()` reads schedule -> execute -> apply outputs (vLLM v1's EngineCore). This module is the
last part: accept each row's token, check end-of-text / max_tokens / context / deadline / stop
strings / indentation / the healed tail, detokenise, and build the deltas each request's sink
receives (best_of ranks its choices at the end). It sees token ids, logprobs and tokenizer
pieces only, never a tensor, and is tested on synthetic token ids (tests/engine/test_output.py)
without torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from codecomplete.engine.sequence import RequestState, Sequence
from codecomplete.engine.stopping import last_line_boundary
from codecomplete.engine.types import ChoiceDelta, RequestOutput, TokenLogprob

log = logging.getLogger(__name__)


class OutputProcessor:
    def __init__(
        self,
        tokenizer,
        counters: dict[str, int],
        on_finished: Callable[[RequestState], None],
        on_failed: Callable[[RequestState, str], None],
    ):
        """`on_finished(req)`: the request's last event went out (the scheduler frees it);
        `on_failed(req, why)`: this request alone failed (its bookkeeping raised, or its row
        could not be sampled)."""
        self.tokenizer = tokenizer
        self.counters = counters
        self.on_finished = on_finished
        self.on_failed = on_failed
        self.touched: dict[int, RequestState] = {}
        self._pieces: dict[int, str] = {}

    def apply(
        self,
        seqs: list[Sequence],
        token_ids: list[int],
        logprobs: list[float] | None = None,
        top: list[list[tuple[int, float]]] | None = None,
        failed: dict[int, str] | None = None,
    ) -> None:
        """One sampled token per row (`seqs[i]` gets `token_ids[i]`); rows in `failed` end their
        request with an error instead."""
        failed = failed or {}
        for i, seq in enumerate(seqs):
            if seq.finished:
                continue
            if i in failed:
                self.on_failed(seq.request, failed[i])
                continue
            lp = logprobs[i] if logprobs is not None else None
            alternatives = top[i] if top is not None else None
            try:
                self.advance(seq, token_ids[i], lp, alternatives)
            except Exception as exc:  # this row's bookkeeping (detokenizer, stop check) failed
                log.exception("request %s failed after a token", seq.request.request_id)
                self.on_failed(seq.request, f"{type(exc).__name__}: {exc}")

    def touch(self, req: RequestState) -> None:
        self.touched[id(req)] = req

    def forget(self, req: RequestState) -> None:
        self.touched.pop(id(req), None)

    def advance(self, seq: Sequence, token: int, lp: float | None, top) -> None:
        req = seq.request
        self.counters["tokens_generated_total"] += 1
        if req.aborted:
            self.counters["tokens_generated_after_cancel_total"] += 1
            return
        seq.output_ids.append(token)
        if lp is not None:
            seq.cum_logprob += lp
        is_stop_token = token in req.stop_token_ids
        heal = seq.healing
        # A token re-typing the healed tail shows only what comes after the tail; one that lies
        # wholly inside it shows nothing and does not count against max_tokens (the context still
        # bounds it: `room`).
        covered = heal.advance(token) if heal is not None and heal.active else 0
        counted = len(seq.output_ids) - (heal.hidden_tokens if heal is not None else 0)
        final = (
            is_stop_token
            or counted >= req.max_tokens
            or (req.room is not None and len(seq.output_ids) >= req.room)
        )
        out_of_time = not final and req.past_deadline()
        final = final or out_of_time
        if not is_stop_token:
            text_offset = len(seq.text)
            seq.text += _visible(seq, seq.detok.add(token))
            seq.pending_ids.append(token)
            if req.request.params.logprobs is not None and lp is not None:
                piece = (heal.index.piece(token) or "")[covered:] if covered else self.piece(token)
                if piece or not covered:  # no entry for a token the client never sees
                    entry = TokenLogprob(
                        token=piece,
                        logprob=lp,
                        top={self.piece(t): v for t, v in (top or [])},
                        text_offset=text_offset,
                    )
                    seq.pending_logprobs.append(entry)
                    seq.all_logprobs.append(entry)
        if final:
            seq.text += _visible(seq, seq.detok.flush())
        if out_of_time:
            seq.text = seq.text[: max(seq.sent, last_line_boundary(seq.text))]
            self.counters["requests_deadline_total"] += seq.index == 0
        safe, stopped = seq.stopper.check(seq.text, final=final)
        reason = "stop" if (stopped or is_stop_token) else "length" if final else None
        if stopped:
            seq.text = seq.text[: max(safe, seq.sent)]
        if reason:
            seq.finished, seq.finish_reason = True, reason
            safe = len(seq.text)
        seq.safe = max(seq.sent, safe)
        self.touch(req)

    def emit(self) -> None:
        """Send every touched request the text that is now safe to send (deltas per choice)."""
        touched, self.touched = self.touched, {}
        for req in touched.values():
            if req.aborted or req.finished:
                continue
            done = all(s.finished for s in req.seqs)
            if req.buffered:
                if done:
                    self.send(req, best_of_choices(req), finished=True)
                continue
            choices = []
            for seq in req.seqs:
                safe = max(seq.safe, seq.sent)
                text = seq.text[seq.sent : safe]
                newly_done = seq.finished and not seq.reported
                if not text and not newly_done:
                    continue
                choices.append(
                    ChoiceDelta(
                        index=seq.index,
                        text=text,
                        token_ids=seq.pending_ids,
                        logprobs=seq.pending_logprobs if req.request.params.logprobs is not None else None,
                        finish_reason=seq.finish_reason if newly_done else None,
                    )
                )
                seq.sent = safe
                seq.pending_ids, seq.pending_logprobs = [], []
                seq.reported = seq.reported or newly_done
            if choices or done:
                self.send(req, choices, finished=done)

    def send(self, req: RequestState, choices: list[ChoiceDelta], finished: bool) -> None:
        out = RequestOutput(
            request_id=req.request_id,
            choices=choices,
            finished=finished,
            num_prompt_tokens=req.num_prompt_tokens,
            num_generated_tokens=sum(len(s.output_ids) for s in req.seqs),
        )
        if not req.first_sent:
            out.prompt_token_ids = list(req.prompt_ids)
            out.prompt_text = req.prompt_text
            out.prompt_logprobs = req.prompt_logprobs
            req.first_sent = True
        req.sink(out)
        if finished:
            self.counters["requests_finished_total"] += 1
            self.on_finished(req)

    def piece(self, token: int) -> str:
        """The text of one token on its own (logprobs entries)."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self.tokenizer.decode(
                [token], skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
            self._pieces[token] = piece
        return piece


def _visible(seq: Sequence, delta: str) -> str:
    """Decoded text as the client sees it: without the healed tail the model re-typed."""
    return seq.healing.visible(delta) if seq.healing is not None else delta


def best_of_choices(req: RequestState) -> list[ChoiceDelta]:
    """best_of > n: the n choices with the highest mean logprob, whole, in one event."""
    ranked = sorted(req.seqs, key=lambda s: s.mean_logprob, reverse=True)[: req.request.params.n]
    want_lp = req.request.params.logprobs is not None
    return [
        ChoiceDelta(
            index=j,
            text=s.text,
            token_ids=[t for t in s.output_ids if t not in req.stop_token_ids],
            logprobs=s.all_logprobs if want_lp else None,
            finish_reason=s.finish_reason,
        )
        for j, s in enumerate(ranked)
    ]

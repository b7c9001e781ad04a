"""Batched sampling: one call picks the next token for every row of a step.

Every transformation is row-wise (penalties, logit bias, the token-healing mask, temperature,
top-k, top-p), and each sequence draws from its own seeded torch.Generator, so a row's result
never depends on what else is in the batch. Reported logprobs are the model's own distribution
(log-softmax of the raw logits, before any mask), as the OpenAI API reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from codecomplete.engine.sequence import Sequence


@dataclass
class SampleResult:
    token_ids: list[int]
    logprobs: list[float] | None  # the chosen token's logprob per row (when any row needs it)
    top: list[list[tuple[int, float]]] | None  # top alternatives per row (rows that asked)
    # Rows whose distribution could not be sampled (no finite logit, NaN, a failed draw), with
    # why: only their sequences fail; every other row of the step goes on.
    failed: dict[int, str] = field(default_factory=dict)


def _generator(seq: Sequence, device: torch.device) -> torch.Generator:
    if seq.generator is None:
        seq.generator = torch.Generator(device=device)
        seq.generator.manual_seed(seq.seed)
    return seq.generator


def _apply_penalties_and_bias(logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
    vocab = logits.shape[-1]
    for i, seq in enumerate(seqs):
        p = seq.params
        if (p.presence_penalty or p.frequency_penalty) and seq.output_ids:
            ids = torch.tensor(seq.output_ids, device=logits.device)
            counts = torch.bincount(ids, minlength=vocab)[:vocab].to(logits.dtype)  # (V,)
            logits[i] -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0).to(logits.dtype)
        if p.logit_bias:
            if seq.bias is None:  # once per sequence, not every step
                seq.bias = (
                    torch.tensor(
                        [t for t in p.logit_bias if 0 <= t < vocab], device=logits.device, dtype=torch.long
                    ),
                    torch.tensor(
                        [v for t, v in p.logit_bias.items() if 0 <= t < vocab],
                        device=logits.device,
                        dtype=logits.dtype,
                    ),
                )
            logits[i].index_add_(0, *seq.bias)
    return logits


def _constrain_to_tail(logits: torch.Tensor, seqs: list[Sequence], rows: list[int]) -> torch.Tensor:
    """Token healing (engine/healing.py): in each of `rows`, only the tokens that keep re-typing
    the prompt's healed tail stay possible; every other row is left as it is."""
    for i in rows:
        allowed = torch.tensor(seqs[i].healing.allowed(), dtype=torch.long, device=logits.device)
        keep = logits[i, allowed]  # (A,)
        logits[i].fill_(float("-inf"))
        logits[i, allowed] = keep
    return logits


def _sample_row(logits: torch.Tensor, seq: Sequence) -> int:
    """Temperature, top-k, top-p and a draw from the sequence's own generator. logits: (V,).

    One row at a time on purpose: batched sort/cumsum kernels can round differently with the
    number of rows, which moved top-p's cut-off and broke seed reproducibility across batch
    compositions (measured: 2 of 8 seeded requests diverged with top_p=0.95).
    """
    p = seq.params
    x = logits / p.temperature
    if not bool(torch.isfinite(x).any()) or bool(torch.isnan(x).any()):
        raise RuntimeError(f"temperature {p.temperature!r} leaves no finite logit")
    gen = _generator(seq, logits.device)
    vocab = x.shape[0]
    if p.top_p >= 1.0 and not (0 < p.top_k < vocab):
        return int(torch.multinomial(torch.softmax(x, dim=-1), 1, generator=gen))
    if 0 < p.top_k < vocab:
        x, order = torch.topk(x, p.top_k)  # sorted, descending
    else:
        x, order = torch.sort(x, descending=True)
    probs = torch.softmax(x, dim=-1)
    if p.top_p < 1.0:
        before = torch.cumsum(probs, dim=-1) - probs  # mass ranked above each token
        keep = before <= p.top_p
        keep[0] = True
        probs = probs * keep
    return int(order[torch.multinomial(probs, 1, generator=gen)])


def sample(logits: torch.Tensor, seqs: list[Sequence]) -> SampleResult:
    """logits: (B, V) for the B sequences of this step, in the same order."""
    logits = logits.float()
    need_lp = any(s.params.logprobs is not None or s.request.buffered for s in seqs)
    raw_lp = torch.log_softmax(logits, dim=-1) if need_lp else None  # (B, V)

    plain = all(
        not (s.params.presence_penalty or s.params.frequency_penalty or s.params.logit_bias) for s in seqs
    )
    work = logits if plain else _apply_penalties_and_bias(logits.clone(), seqs)
    healing = [i for i, s in enumerate(seqs) if s.healing is not None and s.healing.active]
    if healing:
        work = _constrain_to_tail(work if work is not logits else logits.clone(), seqs, healing)
    failed = _unsamplable_rows(work)
    greedy = [i for i, s in enumerate(seqs) if s.params.greedy]
    tokens = [0] * len(seqs)
    if greedy:
        picks = (
            work[greedy].argmax(dim=-1).tolist() if len(greedy) < len(seqs) else work.argmax(dim=-1).tolist()
        )
        for i, t in zip(greedy, picks, strict=False):
            tokens[i] = t
    sampled = [i for i, s in enumerate(seqs) if not s.params.greedy and i not in failed]
    for i in sampled:
        try:
            tokens[i] = _sample_row(work[i], seqs[i])
        except RuntimeError as exc:  # torch.multinomial on a degenerate distribution
            failed[i] = f"sampling failed: {exc}"

    chosen = top = None
    if raw_lp is not None:
        idx = torch.tensor(tokens, device=logits.device)
        chosen = raw_lp.gather(1, idx[:, None]).squeeze(1).tolist()
        kmax = max((s.params.logprobs or 0) for s in seqs)
        top = [[] for _ in seqs]
        if kmax > 0:
            vals, ids = raw_lp.topk(kmax, dim=-1)
            vals, ids = vals.tolist(), ids.tolist()
            for i, s in enumerate(seqs):
                k = s.params.logprobs or 0
                top[i] = list(zip(ids[i][:k], vals[i][:k], strict=False))
    return SampleResult(token_ids=tokens, logprobs=chosen, top=top, failed=failed)


def _unsamplable_rows(logits: torch.Tensor) -> dict[int, str]:
    """Rows with a NaN or without a single finite logit: no token can be drawn from them.
    One reduction over the batch; the per-row loop runs only when something is wrong."""
    top = logits.amax(dim=-1)  # (B,): NaN where a row holds a NaN, -inf where nothing is finite
    if bool(torch.isfinite(top).all()):  # the usual case: one pass over the logits
        return {}
    bad = torch.isnan(logits).any(dim=-1) | ~torch.isfinite(logits).any(dim=-1)  # (B,)
    if not bool(bad.any()):
        return {}
    return {
        i: "the model produced no usable next-token distribution (NaN or no finite logit)"
        for i in bad.nonzero().flatten().tolist()
    }


def prompt_logprobs(
    logits: torch.Tensor, ids: list[int], k: int
) -> list[tuple[float, list[tuple[int, float]]]]:
    """For echo: the logprob of each prompt token after the first given the ones before it.
    logits: (T, V) for the T prompt positions."""
    lp = torch.log_softmax(logits[:-1].float(), dim=-1)  # (T-1, V)
    target = torch.tensor(ids[1:], device=lp.device)
    chosen = lp.gather(1, target[:, None]).squeeze(1).tolist()
    tops: list[list[tuple[int, float]]] = [[] for _ in chosen]
    if k > 0 and chosen:
        vals, top_ids = lp.topk(k, dim=-1)
        tops = [list(zip(a, b, strict=False)) for a, b in zip(top_ids.tolist(), vals.tolist(), strict=False)]
    return list(zip(chosen, tops, strict=False))

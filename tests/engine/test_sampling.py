"""The sampler's row-wise draw (engine/sampling.py): which tokens top-k and top-p keep, that the
draws follow the kept distribution, and that a row that cannot be sampled fails alone."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from codecomplete.engine import sampling


def _seq(seed=0, temperature=1.0, top_p=1.0, top_k=0):
    params = SimpleNamespace(
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        presence_penalty=0.0,
        frequency_penalty=0.0,
        logit_bias=None,
        logprobs=None,
        greedy=temperature == 0,
    )
    return SimpleNamespace(
        params=params,
        request=SimpleNamespace(buffered=False),
        healing=None,
        generator=None,
        seed=seed,
        output_ids=[],
        bias=None,
    )


def _reference_nucleus(probs: np.ndarray, top_p: float) -> list[int]:
    """Rank every token (ties: lower id first) and keep each one whose mass ranked above it is at
    most top_p: the rule the sampler implements without sorting the whole vocabulary."""
    order = np.argsort(-probs, kind="stable")
    before = np.cumsum(probs[order]) - probs[order]
    return order[: max(1, int(np.count_nonzero(before <= top_p)))].tolist()


def _distributions():
    rng = np.random.default_rng(0)
    vocab = 8192
    for alpha in (0.01, 0.1, 1.0):  # from peaked to flat
        yield rng.dirichlet(np.full(vocab, alpha))
    logits = rng.normal(0, 3, vocab)
    p = np.exp(logits - logits.max())
    yield p / p.sum()
    yield np.full(vocab, 1.0 / vocab)  # every token tied
    p = rng.dirichlet(np.full(64, 0.5))
    yield np.concatenate([p, np.zeros(vocab - 64)])  # most of the vocabulary at zero mass
    one = np.zeros(vocab)
    one[17] = 1.0  # all the mass on one token (token healing can leave a single one allowed)
    yield one


@pytest.mark.parametrize("top_p", [0.0, 0.3, 0.9, 0.95, 0.999])
def test_the_nucleus_is_the_one_a_full_sort_gives(top_p):
    for probs in _distributions():
        vals, ids = sampling._nucleus(probs, top_p)
        assert ids.tolist() == _reference_nucleus(probs, top_p)
        assert np.array_equal(vals, probs[ids])


def _draw(seq, logits: np.ndarray, n: int) -> np.ndarray:
    row = logits.astype(np.float32)
    return np.array([sampling._sample_row(row, seq) for _ in range(n)])


def test_draws_follow_the_kept_distribution():
    logits = np.log(np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04]))
    n = 4000
    cases = [
        (dict(), [0.4, 0.25, 0.15, 0.1, 0.06, 0.04]),
        # mass above token 3 is 0.8 <= 0.85, above token 4 0.9: four tokens, renormalised
        (dict(top_p=0.85), [0.4 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0.1 / 0.9, 0, 0]),
        (dict(top_k=2), [0.4 / 0.65, 0.25 / 0.65, 0, 0, 0, 0]),
        # top-k first, then top-p on the renormalised three (0.5, 0.31, 0.19): two tokens left,
        # where top-p on the whole distribution's mass would keep three
        (dict(top_k=3, top_p=0.7), [0.4 / 0.65, 0.25 / 0.65, 0, 0, 0, 0]),
        # temperature 0.5 squares the probabilities before they are renormalised
        (dict(temperature=0.5), np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04]) ** 2),
    ]
    for kw, expected in cases:
        expected = np.asarray(expected, dtype=float) / np.sum(expected)
        seen = np.bincount(_draw(_seq(seed=5, **kw), logits, n), minlength=6) / n
        assert np.all(seen[expected == 0] == 0), kw
        se = np.sqrt(expected * (1 - expected) / n)
        assert np.all(np.abs(seen - expected) <= 5 * se + 1e-12), (kw, seen, expected)


def test_the_same_seed_draws_the_same_tokens_and_another_seed_others():
    logits = np.random.default_rng(1).normal(0, 2, 512)
    a = _draw(_seq(seed=3, temperature=0.8, top_p=0.95), logits, 50)
    b = _draw(_seq(seed=3, temperature=0.8, top_p=0.95), logits, 50)
    c = _draw(_seq(seed=4, temperature=0.8, top_p=0.95), logits, 50)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_a_row_that_cannot_be_sampled_fails_alone():
    logits = torch.zeros(3, 16)
    logits[0, 5] = 10.0
    logits[1] = float("-inf")  # nothing finite
    logits[2, 7] = 3e38  # divided by a tiny temperature: +inf
    seqs = [_seq(seed=1, temperature=0.7), _seq(seed=2), _seq(seed=3, temperature=1e-4)]
    res = sampling.sample(logits, seqs)
    assert set(res.failed) == {1, 2}
    assert res.token_ids[0] == 5


def test_an_unexpected_error_in_one_row_fails_only_that_row(monkeypatch):
    real = sampling._sample_row

    def flaky(row, seq):
        if seq.seed == 2:
            raise ValueError("a bug in one row")
        return real(row, seq)

    monkeypatch.setattr(sampling, "_sample_row", flaky)
    logits = torch.zeros(3, 16)
    logits[:, 9] = 20.0
    res = sampling.sample(logits, [_seq(seed=s) for s in (1, 2, 3)])
    assert set(res.failed) == {1} and "ValueError" in res.failed[1]
    assert res.token_ids[0] == res.token_ids[2] == 9

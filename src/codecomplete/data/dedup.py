"""Exact and near deduplication.

Three parts, because the expensive part is per document and parallel, the decision is global:
- `SignatureStep` (every task): a hash of the normalised content and a 256-value MinHash signature
  (one-permutation hashing, densified) of the file's 5-gram shingles of identifier tokens, saved per
  task next to a sort key.
- `DedupStep` (one task): exact groups by hash, then MinHash LSH (datasketch) over the survivors,
  clusters by union-find over candidate pairs whose estimated Jaccard reaches the threshold; each
  group keeps ONE file: the most permissive licence, then the most stars, then the first repo/path.
  Writes the removed ids with their reason, the id they duplicate and, for a copy of a held-out
  file, the held-out repository.
- `DuplicateFilter` (every task of the write stage): drops what DedupStep removed.

datatrove has MinHash steps of its own, but its clustering keeps a fixed member of each cluster;
we need the licence/stars preference, so the clustering is ours, the hashing vectorised numpy, and
the LSH banding datasketch's band split computed in numpy.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline

from codecomplete.data.decontam import _string_hash, token_spans
from codecomplete.data.document import ascii_proxy, write_json_atomic
from codecomplete.data.steps import CodeFilter, CurateStep
from codecomplete.data.writers import heldout_entry

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")


def normalized_hash(text: str) -> str:
    """Same hash for files that differ only in line endings, trailing spaces or blank lines."""
    lines = map(str.rstrip, text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return hashlib.sha256("\n".join(filter(None, lines)).encode("utf-8")).hexdigest()


def identifier_hashes(text: str) -> np.ndarray:
    """One 64-bit hash per `IDENTIFIER.findall(text)` token, in order: decontamination's numpy
    tokenizer on the bytes (`token_spans`, its identifier and number tokens; the same document's are
    kept from the decontamination step), on `ascii_proxy`'s stand-in for a text with a few non-ASCII
    characters (none of which is part of an identifier); the regex only for a non-ASCII digit."""
    proxy, same = ascii_proxy(text)
    if not same:
        return np.array([_string_hash(t) for t in IDENTIFIER.findall(text)], dtype=np.uint64)
    hashes, ident = token_spans(proxy)
    return hashes[ident]


def shingles(text: str, n: int) -> set[bytes]:
    tokens = IDENTIFIER.findall(text)
    if len(tokens) < n:
        return {" ".join(tokens).encode()}
    return {" ".join(tokens[i : i + n]).encode() for i in range(len(tokens) - n + 1)}


_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: a bijection of uint64 whose every output bit depends on
    every input bit (the shingle polynomial's low bits alone are not uniform)."""
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= _MIX1
        x ^= x >> np.uint64(27)
        x *= _MIX2
        x ^= x >> np.uint64(31)
    return x


@functools.lru_cache(maxsize=8)
def _oph_params(num_perm: int, seed: int) -> tuple[np.uint64, np.ndarray]:
    """The seed's key (xored into every shingle hash before mixing) and the densification order:
    row i is a random order of the bins an empty bin i borrows from (the first non-empty one)."""
    rng = np.random.default_rng(seed)
    key = np.uint64(rng.integers(0, 2**63, dtype=np.uint64))
    order = np.argsort(rng.random((num_perm, num_perm)), axis=1)
    return key, order


# not the token hash's base (0x100000001B3): with the same base, a shingle's hash would be one
# polynomial of its bytes, equal for different splits of the same bytes into tokens
_SHINGLE_BASE = np.uint64(0x9E3779B97F4A7C15)


def shingle_hashes(text: str, n: int) -> np.ndarray:
    """(windows,) uint64: each n-gram of identifier tokens as a polynomial of its tokens' hashes."""
    th = identifier_hashes(text)
    if len(th) == 0:
        th = np.zeros(1, dtype=np.uint64)
    k = min(n, len(th))
    windows = len(th) - k + 1
    sh = th[:windows].copy()
    with np.errstate(over="ignore"):
        for j in range(1, k):
            sh *= _SHINGLE_BASE
            sh += th[j : j + windows]
    return sh


def minhash(text: str, num_perm: int, n: int, seed: int) -> np.ndarray:
    """(num_perm,) uint32 MinHash signature of the file's n-gram shingles of identifier tokens, by
    one-permutation hashing with optimal densification (Li, Owen & Zhang 2012; Shrivastava 2017).

    One 64-bit hash per shingle (the seed's key xored in, then splitmix64's finaliser): its high
    word picks one of `num_perm` bins, its low word is the value, and each bin keeps its smallest
    value (`np.minimum.at`). A bin no shingle fell into takes the value of the first non-empty bin
    in a fixed random order of its own, so two files agree on a position with probability ~ their
    Jaccard similarity, as with `num_perm` permutations, for one hash per shingle instead of
    `num_perm` (256 multiply-add-min passes over every shingle were ~20% of a profiled run).
    Which pairs are found is measured on a planted set (`tests/data/neardup_cases.py`,
    docs/curate.md "Near dedup, measured"). A repeated shingle changes no minimum: no `np.unique`.
    """
    key, order = _oph_params(num_perm, seed)
    h = shingle_hashes(text, n)
    h ^= key
    _mix64(h)
    with np.errstate(over="ignore"):
        bins = (((h >> np.uint64(32)) * np.uint64(num_perm)) >> np.uint64(32)).astype(np.intp)  # fastrange
    out = np.full(num_perm, 0xFFFFFFFF, dtype=np.uint32)
    np.minimum.at(out, bins, h.astype(np.uint32))  # the low word
    filled = np.zeros(num_perm, dtype=bool)
    filled[bins] = True  # not `out < 2**32 - 1`: that value can be a minimum
    if not filled.all():
        empty = np.flatnonzero(~filled)
        rows = order[empty]  # (empty, num_perm)
        out[empty] = out[rows[np.arange(len(empty)), np.argmax(filled[rows], axis=1)]]
    return out


class SignatureStep(CurateStep):
    name = "signature"

    def __init__(self, sig_dir: str, num_perm: int, ngram: int, seed: int, near: bool = True, **kw):
        super().__init__(**kw)
        self.sig_dir, self.num_perm, self.ngram, self.seed, self.near = sig_dir, num_perm, ngram, seed, near

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        keys, sigs = [], []
        for doc in data:
            m = doc.metadata
            keys.append(
                [
                    doc.id,
                    normalized_hash(doc.text),
                    m.get("license_rank", 6),
                    m.get("stars", 0),
                    m.get("repo"),
                ]
            )
            if self.near:
                with self.track_time():
                    sigs.append(minhash(doc.text, self.num_perm, self.ngram, self.seed))
            yield doc
        folder = Path(self.sig_dir)
        folder.mkdir(parents=True, exist_ok=True)
        matrix = np.stack(sigs) if sigs else np.zeros((0, self.num_perm), dtype=np.uint32)
        tmp = folder / f"{rank:05d}.npy.tmp"
        with open(tmp, "wb") as f:
            np.save(f, matrix)
        tmp.replace(folder / f"{rank:05d}.npy")
        write_json_atomic(folder / f"{rank:05d}.json", keys)
        self.save_tally(rank)


def _keep_key(key: list, heldout: set[str]) -> tuple:
    """Held-out repositories first (a copy in train would leak the evaluation files), then the
    most permissive licence, the most stars, the first id."""
    doc_id, _hash, lic_rank, stars, repo = key
    held = repo in heldout or (repo or "").split("/")[-1] in heldout
    return (0 if held else 1, lic_rank, -stars, doc_id)


class DedupStep(CurateStep):
    """Decides, over all tasks' signatures, which files are duplicates; one task."""

    name = "dedup"
    stage = "dedup"

    def __init__(self, sig_dir: str, removed_path: str, tasks: int, exact: bool, near: bool, threshold: float,
                 num_perm: int, seed: int, heldout: list[str] = (), **kw):  # fmt: skip
        super().__init__(**kw)
        self.heldout = set(heldout)
        self.sig_dir, self.removed_path, self.tasks = sig_dir, removed_path, tasks
        self.exact, self.near, self.threshold = exact, near, threshold
        self.num_perm, self.seed = num_perm, seed

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        keys: list[list] = []
        mats = []
        for r in range(self.tasks):
            keys += json.loads((Path(self.sig_dir) / f"{r:05d}.json").read_text())
            if self.near:
                mats.append(np.load(Path(self.sig_dir) / f"{r:05d}.npy"))
        removed: dict[str, list[str]] = {}
        alive = list(range(len(keys)))
        if self.exact:
            groups: dict[str, list[int]] = {}
            for i, key in enumerate(keys):
                groups.setdefault(key[1], []).append(i)
            alive = []
            for members in groups.values():
                best = min(members, key=lambda i: _keep_key(keys[i], self.heldout))
                alive.append(best)
                for i in members:
                    if i != best:
                        removed[keys[i][0]] = ["exact_duplicate", keys[best][0]]
            alive.sort()
        if self.near and alive:
            sig = np.concatenate(mats)
            for i, best in self._near_clusters(sig, alive, keys):
                removed[keys[i][0]] = ["near_duplicate", keys[best][0]]
        self._mark_heldout_copies(removed, keys)
        write_json_atomic(self.removed_path, dict(sorted(removed.items())))
        self.tally.count("documents", len(keys))
        self.tally.count("exact_duplicate", sum(1 for v in removed.values() if v[0] == "exact_duplicate"))
        self.tally.count("near_duplicate", sum(1 for v in removed.values() if v[0] == "near_duplicate"))
        self.save_tally(rank)
        yield from ()

    def _mark_heldout_copies(self, removed: dict[str, list[str]], keys: list[list]) -> None:
        """Appends the held-out repository to the decision of a copy of a held-out file, for the
        per-package count of removed copies (a chain is at most exact -> near -> kept)."""
        if not self.heldout:
            return
        repo_of = {key[0]: key[4] for key in keys}
        for decision in removed.values():
            root = decision[1]
            for _ in range(len(removed)):
                if root not in removed:
                    break
                root = removed[root][1]
            entry = heldout_entry(repo_of.get(root), self.heldout)
            if entry:
                decision.append(entry)

    def _near_clusters(self, sig: np.ndarray, alive: list[int], keys: list[list]):
        pairs = lsh_candidates(sig, alive, self.threshold, self.num_perm)
        # LSH gives candidates; the estimated Jaccard decides (fewer false positives).
        close = ((i, j) for i, j in pairs if np.mean(sig[i] == sig[j]) >= self.threshold)
        for members in clusters(alive, close):
            best = min(members, key=lambda i: _keep_key(keys[i], self.heldout))
            for i in members:
                if i != best:
                    yield i, best


def clusters(items, pairs) -> list[list[int]]:
    """The groups of two or more `items` that `pairs` connect (union-find with path halving; each
    root is its group's smallest item), in the order of `items`."""
    parent = {i: i for i in items}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in items:
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _gauss_legendre(m: int) -> tuple[np.ndarray, np.ndarray]:
    """`np.polynomial.legendre.leggauss(m)` (nodes and weights on [-1, 1]) by Newton's method on the
    Legendre recurrence, all nodes at once. leggauss takes the eigenvalues of a matrix: one LAPACK call,
    after which OpenBLAS's idle threads spin on the other cores (~0.1 CPU s per run, measured)."""
    k = np.arange(1, m + 1, dtype=np.float64)
    x = np.cos(np.pi * (k - 0.25) / (m + 0.5))  # the roots' classic first guesses, descending
    for _ in range(100):
        p, dp = _legendre(m, x)
        step = p / dp
        x = x - step
        if np.abs(step).max() < 1e-15:
            break
    _, dp = _legendre(m, x)
    return x[::-1].copy(), (2 / ((1 - x * x) * dp * dp))[::-1].copy()


def _legendre(m: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P_m(x), P_m'(x)) by the three-term recurrence."""
    p0, p1 = np.ones_like(x), x.copy()
    for n in range(2, m + 1):  # P_n from P_(n-1) and P_(n-2)
        p0, p1 = p1, ((2 * n - 1) * x * p1 - (n - 1) * p0) / n
    return p1, m * (x * p1 - p0) / (x * x - 1)


@functools.lru_cache(maxsize=8)
def _band_split(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's (bands, rows) for a threshold (`datasketch.lsh._optimal_param` with equal weights):
    the (b, r), b * r <= num_perm, that minimises the false-positive area under the S-curve below the
    threshold plus the false-negative area above it, first in datasketch's (b, then r) order.

    The integrands are polynomials of degree b * r <= num_perm, so Gauss-Legendre with num_perm // 2 + 1
    nodes integrates them exactly, all pairs at once in numpy; datasketch integrates each pair with
    scipy's `quad` and importing scipy.integrate alone cost ~0.9 CPU s per run. Equality with
    datasketch's choice over a grid of thresholds is tested (tests/data/test_steps.py)."""
    pairs = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    bands = np.array([b for b, _ in pairs], dtype=np.float64)[:, None]
    rows = np.array([r for _, r in pairs], dtype=np.float64)[:, None]
    x, w = _gauss_legendre(num_perm // 2 + 1)
    lo, lo_w = (x + 1) / 2 * threshold, w / 2 * threshold  # nodes on [0, threshold]
    hi, hi_w = threshold + (x + 1) / 2 * (1 - threshold), w / 2 * (1 - threshold)  # on [threshold, 1]
    false_pos = ((1 - (1 - lo[None, :] ** rows) ** bands) * lo_w).sum(axis=1)
    false_neg = (((1 - hi[None, :] ** rows) ** bands) * hi_w).sum(axis=1)
    return pairs[int(np.argmin(0.5 * false_pos + 0.5 * false_neg))]


def lsh_candidates(
    sig: np.ndarray, rows: list[int], threshold: float, num_perm: int
) -> list[tuple[int, int]]:
    """Pairs (i < j) of `rows` that share one LSH band: the candidates datasketch's `MinHashLSH`
    (same band split, from its `_optimal_param`) would return, found with numpy per band instead of
    one Python dict insert and query per file and band."""
    bands, width = _band_split(threshold, num_perm)
    idx = np.asarray(rows, dtype=np.int64)
    band_keys = _band_keys(sig[idx], bands, width)  # (bands, len(rows))
    pairs: set[tuple[int, int]] = set()
    for b in range(bands):
        _, inverse, counts = np.unique(band_keys[b], return_inverse=True, return_counts=True)
        shared = np.flatnonzero(counts[inverse] > 1)  # rows whose bucket holds another row
        if len(shared) == 0:
            continue
        order = shared[np.argsort(inverse[shared], kind="stable")]
        buckets = np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)
        for bucket in buckets:
            members = sorted(idx[bucket].tolist())
            pairs.update((a, c) for k, a in enumerate(members) for c in members[k + 1 :])
    return sorted(pairs)


def _band_keys(sig: np.ndarray, bands: int, width: int) -> np.ndarray:
    """(bands, rows) uint64: each band's values of each row as one 64-bit key (a collision only adds
    a candidate: the Jaccard check decides)."""
    rows_sig = sig.astype(np.uint64)
    keys = np.zeros((bands, len(sig)), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for b in range(bands):
            for k in range(b * width, (b + 1) * width):
                keys[b] = keys[b] * np.uint64(0x100000001B3) + rows_sig[:, k]
    return keys


def lsh_query(
    sig: np.ndarray, queries: list[int], targets: list[int], threshold: float, num_perm: int
) -> dict[int, set[int]]:
    """Query row -> the target rows it shares an LSH band with: what inserting the targets into
    datasketch's `MinHashLSH(threshold, num_perm)` and querying each query row returns (same band
    split), with numpy and without importing datasketch (and scipy: ~0.5-1 CPU s per run)."""
    if not queries or not targets:
        return {}
    bands, width = _band_split(threshold, num_perm)
    q_idx, t_idx = np.asarray(queries, dtype=np.int64), np.asarray(targets, dtype=np.int64)
    q_keys, t_keys = _band_keys(sig[q_idx], bands, width), _band_keys(sig[t_idx], bands, width)
    out: dict[int, set[int]] = {}
    for b in range(bands):
        order = np.argsort(t_keys[b], kind="stable")
        sorted_keys = t_keys[b][order]
        lo = np.searchsorted(sorted_keys, q_keys[b], side="left")
        hi = np.searchsorted(sorted_keys, q_keys[b], side="right")
        for qi in np.flatnonzero(hi > lo).tolist():
            out.setdefault(int(q_idx[qi]), set()).update(t_idx[order[lo[qi] : hi[qi]]].tolist())
    return out


class DuplicateFilter(CodeFilter):
    name = "dedup_filter"
    stage = "write"

    def __init__(self, removed_path: str, **kw):
        super().__init__(**kw)
        self.removed_path = removed_path
        self._removed: dict | None = None

    def filter(self, doc):
        if self._removed is None:
            self._removed = json.loads(Path(self.removed_path).read_text())
        hit = self._removed.get(doc.id)
        if hit:
            doc.metadata["duplicate_of"] = hit[1]
            if len(hit) > 2:  # a copy of a held-out file: counted per held-out package
                doc.metadata["heldout_of"] = hit[2]
            return False, hit[0]
        return True

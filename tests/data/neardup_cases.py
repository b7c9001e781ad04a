"""A planted near-duplicate set for the MinHash dedup: real files, each edited to several exact
Jaccard similarities around the threshold, plus unrelated files; scored pair by pair and file by file.

    PYTHONPATH=src python tests/data/neardup_cases.py [SEED]   # the table of docs/curate.md ("Near dedup")

The files are this interpreter's standard library (sorted paths, so the same files every time on one
Python version). A variant of a base file is made by editing a growing number of its lines, in a
seeded random order, until the exact Jaccard similarity of the two files' shingle sets (5-grams of
identifier tokens, `dedup.shingles`) is as close as it gets to a target: an edit renames an
identifier of the line, deletes the line, or inserts a line of another file after it (a third each).

Scored with the pipeline's own decision (`DedupStep._near_clusters`: LSH candidates, then the
estimated Jaccard >= threshold, then union-find):
- pairs: a planted pair (base-variant or variant-variant of one base) whose exact Jaccard is >= the
  threshold should be found; recall = found / should; precision = found pairs whose exact Jaccard
  is >= the threshold / all found pairs (any two files, planted or not; the exact Jaccard of every
  found pair is computed). Per bucket of exact Jaccard: the share of planted pairs found (the S-curve).
- files: the files union-find over the true pairs would remove (one kept per cluster, the same keep
  rule) against the files the pipeline removes.
"""

from __future__ import annotations

import random
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TARGETS = (0.5, 0.6, 0.65, 0.68, 0.72, 0.75, 0.8, 0.9)
BUCKETS = (0.0, 0.55, 0.62, 0.67, 0.7, 0.73, 0.77, 0.85, 1.01)
NAME = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


@dataclass
class Planted:
    ids: list[str]
    texts: list[str]
    family: list[int]  # the base's index for a base or a variant, -1 for an unrelated file


def _stdlib_files(n: int, lo: int = 1500, hi: int = 60_000) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "__pycache__" in path.parts or "encodings" in path.parts:
            continue  # the codec tables are near-duplicates of each other already
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if lo <= len(text.encode()) <= hi:
            out.append(text)
    step = max(1, len(out) // n)
    return out[::step][:n]


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def _edit(
    lines: list[str], order: list[int], kinds: list[int], k: int, donor: list[str], rng_seed: int
) -> str:
    """The text with the first `k` lines of `order` edited (kinds: 0 rename, 1 delete, 2 insert)."""
    rnd = random.Random(rng_seed)
    chosen = set(order[:k])
    out = []
    for i, line in enumerate(lines):
        if i not in chosen:
            out.append(line)
            continue
        kind = kinds[i]
        if kind == 0:
            names = NAME.findall(line)
            if names:
                old = rnd.choice(names)
                line = re.sub(rf"\b{re.escape(old)}\b", f"{old}_{rnd.randrange(10**6)}", line, count=1)
            out.append(line)
        elif kind == 2:
            out += [line, donor[rnd.randrange(len(donor))]]
    return "\n".join(out)


def variant(base: str, target: float, donor: str, seed: int, ngram: int = 5) -> tuple[str, float]:
    """A variant of `base` whose exact shingle Jaccard with it is closest to `target`."""
    from codecomplete.data.dedup import shingles

    lines = base.split("\n")
    rnd = random.Random(seed)
    order = list(range(len(lines)))
    rnd.shuffle(order)
    kinds = [rnd.randrange(3) for _ in lines]
    dlines = [ln for ln in donor.split("\n") if ln.strip()] or ["pass"]
    ref = shingles(base, ngram)
    lo, hi = 0, len(lines)
    best = (2.0, base, 1.0)
    while lo <= hi:  # the Jaccard falls (roughly monotonically) as more lines are edited
        k = (lo + hi) // 2
        text = _edit(lines, order, kinds, k, dlines, seed)
        j = jaccard(ref, shingles(text, ngram))
        if abs(j - target) < best[0]:
            best = (abs(j - target), text, j)
        if j > target:
            lo = k + 1
        else:
            hi = k - 1
    return best[1], best[2]


def planted(bases: int = 40, unrelated: int = 100, seed: int = 0) -> Planted:
    files = _stdlib_files(bases + unrelated + 1)
    base_texts, others = files[:bases], files[bases:]
    ids, texts, family = [], [], []
    for b, text in enumerate(base_texts):
        ids.append(f"base/{b:03d}/0")
        texts.append(text)
        family.append(b)
        for t, target in enumerate(TARGETS):
            v, _ = variant(text, target, others[(b + t) % len(others)], seed * 1000 + b * 10 + t)
            ids.append(f"base/{b:03d}/{t + 1}")
            texts.append(v)
            family.append(b)
    for u, text in enumerate(others[:unrelated]):
        ids.append(f"other/{u:03d}")
        texts.append(text)
        family.append(-1)
    return Planted(ids, texts, family)


def score(p: Planted, threshold: float = 0.7, num_perm: int = 256, ngram: int = 5, seed: int = 1) -> dict:
    """Pair and file recall/precision of the pipeline's near dedup on a planted set."""
    from codecomplete.data.dedup import DedupStep, clusters, lsh_candidates, minhash, shingles

    sets = [shingles(t, ngram) for t in p.texts]
    sig = np.stack([minhash(t, num_perm, ngram, seed) for t in p.texts])
    rows = list(range(len(p.texts)))
    found = [
        (i, j)
        for i, j in lsh_candidates(sig, rows, threshold, num_perm)
        if np.mean(sig[i] == sig[j]) >= threshold
    ]
    planted_pairs = {
        (i, j): jaccard(sets[i], sets[j])
        for i in rows
        for j in rows
        if i < j and p.family[i] >= 0 and p.family[i] == p.family[j]
    }
    exact = dict(planted_pairs)
    for pair in found:
        if pair not in exact:
            exact[pair] = jaccard(sets[pair[0]], sets[pair[1]])
    should = {pair for pair, j in planted_pairs.items() if j >= threshold}
    found_set = set(found)
    true_found = {pair for pair in found_set if exact[pair] >= threshold}
    buckets = []
    for lo, hi in zip(BUCKETS, BUCKETS[1:], strict=False):
        inside = [pair for pair, j in planted_pairs.items() if lo <= j < hi]
        buckets.append((lo, hi, len(inside), sum(pair in found_set for pair in inside)))
    # files: what union-find over the true pairs would remove vs what the pipeline removes
    keys = [[doc_id, "", 1, 0, doc_id.split("/")[0]] for doc_id in p.ids]
    truth_pairs = {pair for pair, j in exact.items() if j >= threshold}
    expected = {i for g in clusters(range(len(rows)), truth_pairs) for i in g if i != min(g)}
    step = DedupStep("", "", 1, exact=False, near=True, threshold=threshold, num_perm=num_perm, seed=seed)
    removed = {i for i, _best in step._near_clusters(sig, rows, keys)}
    err = {(i, j): np.mean(sig[i] == sig[j]) - j_ for (i, j), j_ in planted_pairs.items() if j_ >= 0.5}
    est = np.array(list(err.values()))
    small = np.array([e for (i, j), e in err.items() if min(len(sets[i]), len(sets[j])) < num_perm] or [0.0])
    return {
        "files": len(rows),
        "estimate_bias": float(est.mean()),  # estimated - exact Jaccard, planted pairs at >= 0.5
        "estimate_rmse": float(np.sqrt((est**2).mean())),
        "small_pairs": int(len(small)),  # pairs where one file has fewer shingles than num_perm
        "estimate_rmse_small": float(np.sqrt((small**2).mean())),
        "planted_pairs": len(planted_pairs),
        "pair_recall": len(should & found_set) / max(1, len(should)),
        "pair_precision": len(true_found) / max(1, len(found_set)),
        "found_pairs": len(found_set),
        "false_pairs": sorted(round(exact[pair], 3) for pair in found_set - true_found),
        "buckets": buckets,
        "file_recall": len(removed & expected) / max(1, len(expected)),
        "file_precision": len(removed & expected) / max(1, len(removed)),
        "expected_removed": len(expected),
        "removed": len(removed),
    }


def main() -> None:
    import sys

    p = planted()
    s = score(p, seed=int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    print(
        f"{s['files']} files ({p.family.count(-1)} unrelated), {s['planted_pairs']} planted pairs; "
        f"pairs found {s['found_pairs']}: recall {s['pair_recall']:.3f}, precision {s['pair_precision']:.3f}; "
        f"files removed {s['removed']} of {s['expected_removed']} expected: recall {s['file_recall']:.3f}, "
        f"precision {s['file_precision']:.3f}; found pairs under the threshold: {s['false_pairs']}; "
        f"estimated - exact Jaccard (pairs >= 0.5): mean {s['estimate_bias']:+.4f}, rms {s['estimate_rmse']:.4f} "
        f"({s['small_pairs']} pairs with a file of fewer than 256 shingles: rms {s['estimate_rmse_small']:.4f})"
    )
    print("| exact Jaccard | planted pairs | found | share |\n|---|---|---|---|")
    for lo, hi, n, f in s["buckets"]:
        print(f"| {lo:.2f}-{min(hi, 1.0):.2f} | {n} | {f} | {f / max(1, n):.3f} |")


if __name__ == "__main__":
    main()

"""Checks that no file of an evaluation set reached a training corpus: run before training on a
new corpus (docs/train.md, "More data").

    python scripts/check_heldout_leaks.py --eval evalsets/heldout-python/test.jsonl.gz \
        --corpus data/tiny-py/corpus data/pypi-permissive

For each corpus's train and valid documents it looks for: a document of an evaluated package
(`repo`), the same file (sha or whitespace-normalised text), a copy under another folder (a path
ending in an evaluated file's path, e.g. `*/_vendor/packaging/version.py`), and near copies (a
document holding >= --overlap of an evaluated file's 6-line shingles: forks and renamed copies).
Exits 1 and lists them when it finds any.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

SHINGLE = 6


def read_jsonl(path: Path):
    with gzip.open(path, "rt") if path.suffix == ".gz" else path.open() as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def norm_hash(code: str) -> str:
    return hashlib.sha1("\n".join(ln.strip() for ln in code.splitlines() if ln.strip()).encode()).hexdigest()


def shingles(code: str) -> set[int]:
    lines = [ln.strip() for ln in code.splitlines() if len(ln.strip()) > 3]
    return {hash("\n".join(lines[i : i + SHINGLE])) for i in range(max(0, len(lines) - SHINGLE + 1))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--eval",
        required=True,
        type=Path,
        help="evaluation documents (.jsonl.gz), or a curated folder (its test split)",
    )
    ap.add_argument("--corpus", required=True, nargs="+", type=Path, help="curated output folders")
    ap.add_argument("--splits", nargs="+", default=["train", "valid"])
    ap.add_argument("--overlap", type=float, default=0.5, help="near copy: share of a file's shingles")
    args = ap.parse_args(argv)

    # a .jsonl(.gz) file, or a curated folder: its held-out split
    files = sorted((args.eval / "documents" / "test").glob("*.jsonl*")) if args.eval.is_dir() else [args.eval]
    evald = [d for f in files for d in read_jsonl(f)]
    if not evald:
        raise SystemExit(f"{args.eval}: no evaluation documents")
    repos = {d["repo"] for d in evald}
    by_sha = {d["sha"]: d for d in evald}
    by_norm = {norm_hash(d["code"]): d for d in evald}
    paths = {d["path"]: d for d in evald}
    owner: dict[int, list[int]] = {}
    sizes = []
    for i, d in enumerate(evald):
        sh = shingles(d["code"])
        sizes.append(len(sh))
        for h in sh:
            owner.setdefault(h, []).append(i)

    found: list[str] = []
    docs = 0
    for corpus in args.corpus:
        for split in args.splits:
            for shard in sorted((corpus / "documents" / split).glob("*.jsonl*")):
                for d in read_jsonl(shard):
                    docs += 1
                    where = f"{corpus}/{split}: {d['repo']}/{d['path']}"
                    if d["repo"] in repos:
                        found.append(f"{where}: an evaluated package")
                    if d.get("sha") in by_sha or norm_hash(d["code"]) in by_norm:
                        found.append(f"{where}: the same file as an evaluated one")
                    hit = next((p for p in paths if d["path"].endswith("/" + p)), None)
                    if hit:
                        found.append(f"{where}: a copy of {paths[hit]['repo']}/{hit} (path)")
                    counts = Counter(i for h in shingles(d["code"]) for i in owner.get(h, ()))
                    for i, n in counts.items():
                        if sizes[i] >= 5 and n / sizes[i] >= args.overlap:
                            e = evald[i]
                            found.append(f"{where}: holds {n}/{sizes[i]} shingles of {e['repo']}/{e['path']}")
    print(f"{len(evald)} evaluated files of {', '.join(sorted(repos))}; {docs:,} documents checked "
          f"in {', '.join(map(str, args.corpus))} ({', '.join(args.splits)})")  # fmt: skip
    for line in found:
        print("LEAK", line)
    print(f"{len(found)} leak(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

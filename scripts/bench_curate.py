"""Curation throughput: MB/s of input through the default recipe, per worker and per core (CPU time).

    python scripts/bench_curate.py --mb 20 --workers 1
    python scripts/bench_curate.py --mb 20 --workers 1 --baseline-src /path/to/older/src --rounds 3 --check-identical

`--baseline-src` runs the same benchmark with another checkout's `src` (before/after side by side:
rounds alternate, each in a fresh interpreter, so both see the same machine load);
`--check-identical` then compares the curated shards of both trees byte for byte (exit 1 if they
differ); `--compare-records` compares their documents instead (decompressed, by repo/path: the same
record, a different record, or kept by one tree only), for changes that alter the bytes on purpose
(the gzip level) or which near-duplicates are dropped. `--small-mb` (default 2, 0: none) also runs each tree on that smaller sample in every round:
the line through the two sizes' median CPU seconds splits a run into a fixed cost per run (its
intercept: imports, executor setup, the benchmark index) and a marginal rate (its slope, MB per CPU
second), and projects what a bigger corpus costs per core (`--project-mb`, default 600). The
headline stays MB per CPU second of the whole run at `--mb`. One more run of each tree under cProfile gives the top costs by own time (`--profile N`,
0 for none; with one worker every task runs in the profiled process). `make bench` runs it with
`--append BENCHMARKS.md`.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "data" / "local-python.yaml"


def _run(src: Path, mb: float, workers: int, keep: Path | None = None, profile: Path | None = None) -> dict:
    """One benchmark in a fresh interpreter with `src` first on the path; `keep`: where the run's
    curated documents are copied (before its temporary folder goes); `profile`: where cProfile's
    stats of the run go (this process only: with one worker, every task)."""
    # CPU time is taken here, not by the tree's own bench (an older tree's does not report it)
    code = (
        "import json, resource\n"
        "from pathlib import Path\n"
        "import codecomplete.data.bench as b\n"
        "def cpu():\n"
        "    a, k = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "    return a.ru_utime + a.ru_stime + k.ru_utime + k.ru_stime\n"
        "spent = []\n"
        "run = b.run_curate\n"
        "def timed(*a, **k):\n"
        f"    prof = {str(profile) if profile else None!r}\n"
        "    if prof:\n"
        "        import cProfile; p = cProfile.Profile(); p.enable()\n"
        "    c0 = cpu(); out = run(*a, **k); spent.append(cpu() - c0)\n"
        "    if prof:\n"
        "        p.disable(); p.dump_stats(prof)\n"
        f"    keep = {str(keep) if keep else None!r}\n"
        "    if keep:\n"
        "        import shutil; shutil.copytree(Path(a[0].out) / 'documents', keep, dirs_exist_ok=True)\n"
        "    return out\n"
        "b.run_curate = timed  # the same window as the wall-clock time: the run, not the sampling\n"
        f"r = b.bench_curate({mb}, {workers}, {str(RECIPE)!r})\n"
        "r['cpu_seconds'] = round(spent[0], 2)\n"
        "r['mb_per_cpu_s'] = round(r['input_mb'] / r['cpu_seconds'], 3)\n"
        "print(json.dumps(r))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _line(r: dict) -> str:
    return (
        f"{r['input_mb']} MB in {r['seconds']} s with {r['workers']} worker(s): {r['mb_per_s']} MB/s "
        f"({r['mb_per_s_per_worker']} MB/s per worker); {r['cpu_seconds']} CPU s: {r['mb_per_cpu_s']} MB/s per core; "
        f"{r['kept_documents']} documents kept"
    )


def _records(folder: Path) -> dict[str, str]:
    """repo/path -> the JSON line of every curated document under `folder` (every split)."""
    import gzip

    out = {}
    for shard in sorted(folder.rglob("*.jsonl.gz")):
        with gzip.open(shard, "rt", encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                out[f"{rec['repo']}/{rec['path']}"] = line
    return out


def compare_records(a: Path, b: Path) -> str:
    ra, rb = _records(a), _records(b)
    common = ra.keys() & rb.keys()
    differ = sorted(k for k in common if ra[k] != rb[k])
    only_a, only_b = sorted(ra.keys() - rb.keys()), sorted(rb.keys() - ra.keys())
    return (
        f"curated documents: {len(common) - len(differ)} identical records, {len(differ)} different"
        f"{' (' + ', '.join(differ[:5]) + ')' if differ else ''}, {len(only_a)} kept by this tree only"
        f"{' (' + ', '.join(only_a[:8]) + ')' if only_a else ''}, {len(only_b)} by the baseline only"
        f"{' (' + ', '.join(only_b[:8]) + ')' if only_b else ''}"
    )


def _same_files(a: Path, b: Path) -> list[str]:
    """Relative paths whose bytes differ between two folders (or that one of them lacks)."""
    names = {p.relative_to(a) for p in a.rglob("*") if p.is_file()} | {
        p.relative_to(b) for p in b.rglob("*") if p.is_file()
    }
    return sorted(
        str(n)
        for n in names
        if not ((a / n).is_file() and (b / n).is_file() and filecmp.cmp(a / n, b / n, False))
    )


# What a run spends its CPU on, as cumulative time of the functions that do each part (from the
# profile: a function's calls, callees included). Imports inside a part count in both.
COMPONENTS = [
    ("MinHash signatures", "data/dedup.py", ("minhash",)),
    ("decontamination", "data/decontam.py", ("filter",)),
    ("redaction", "data/redactor.py", ("redact",)),
    ("writing shards (JSON + gzip)", "data/document.py", ("write", "close")),
    ("imports", "<frozen importlib._bootstrap>", ("_find_and_load",)),
    ("filters", "data/filters.py", ("filter",)),
    ("reading intermediate shards", "data/document.py", ("read_jsonl_gz",)),
    ("reading files", "data/readers.py", ("read_file",)),
    ("exact-dedup hash", "data/dedup.py", ("normalized_hash",)),
    ("near dedup + held-out leaks (one task)", "data/dedup.py", ("_near_clusters",)),
]


def top_costs(stats_path: Path, n: int = 5) -> list[str]:
    """The `n` parts of the run (COMPONENTS) with the most CPU time in a cProfile dump, then the
    `n` functions with the most own time, as "name: s, % of the profiled run"."""
    import pstats

    st = pstats.Stats(str(stats_path))
    total = st.total_tt or 1.0
    parts = []
    for name, file, funcs in COMPONENTS:
        ct = sum(v[3] for (f, _line, fn), v in st.stats.items() if f.endswith(file) and fn in funcs)
        parts.append((ct, name))
    out = [f"{name} {ct:.2f} s ({100 * ct / total:.0f}%)" for ct, name in sorted(parts, reverse=True)[:n]]
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    own = []
    for (file, line, func), (_cc, _nc, tt, _ct, _callers) in rows:
        where = "built-in" if file == "~" else f"{Path(file).parent.name}/{Path(file).name}:{line}"
        own.append(f"{func} ({where}) {tt:.2f} s")
    return [
        f"by part: {'; '.join(out)} of {total:.2f} s profiled",
        f"by function (own time): {'; '.join(own)}",
    ]


def _median(rs: list[dict], key: str) -> float:
    return sorted(r[key] for r in rs)[len(rs) // 2]


def fixed_and_marginal(small: list[dict], big: list[dict], project_mb: float) -> dict:
    """Fixed CPU seconds per run and marginal MB per CPU second, from the line through the median
    CPU seconds of the runs at two sizes; and the whole-run MB per CPU second at `project_mb`."""
    (x0, y0), (x1, y1) = ((_median(rs, "input_mb"), _median(rs, "cpu_seconds")) for rs in (small, big))
    slope = (y1 - y0) / (x1 - x0)  # CPU s per MB
    fixed = y0 - slope * x0
    return {
        "fixed_cpu_s": round(fixed, 2),
        "marginal_mb_per_cpu_s": round(1 / slope, 2) if slope > 0 else float("inf"),
        "project_mb": project_mb,
        "projected_mb_per_cpu_s": round(project_mb / (fixed + slope * project_mb), 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=20.0, help="MB of standard-library code to curate")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1, help="runs of each tree (the median is reported)")
    p.add_argument("--baseline-src", default=None, help="another checkout's src/ to compare against")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--check-identical",
        action="store_true",
        help="with --baseline-src: fail unless both trees write byte-identical curated shards",
    )
    p.add_argument(
        "--compare-records",
        action="store_true",
        help="with --baseline-src: compare the curated documents of both trees (decompressed, by repo/path)",
    )
    p.add_argument("--profile", type=int, default=5, help="top costs of one extra profiled run (0: none)")
    p.add_argument(
        "--small-mb",
        type=float,
        default=2.0,
        help="also run this size: fixed cost per run + marginal rate (0: no)",
    )
    p.add_argument(
        "--project-mb", type=float, default=600.0, help="corpus size the marginal rate is projected to"
    )
    p.add_argument("--append", default=None, help="append the result as a section of this Markdown file")
    args = p.parse_args()
    trees = [("this tree", SRC)] + ([("baseline", Path(args.baseline_src))] if args.baseline_src else [])
    results: dict[str, list[dict]] = {name: [] for name, _ in trees}
    small: dict[str, list[dict]] = {name: [] for name, _ in trees}
    loads = []
    lines, costs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, src in trees:
                loads.append(os.getloadavg()[0])
                compare = args.check_identical or args.compare_records
                keep = Path(tmp) / name.replace(" ", "_") if compare and r == 0 else None
                results[name].append(_run(src, args.mb, args.workers, keep=keep))
                if args.small_mb:
                    loads.append(os.getloadavg()[0])
                    small[name].append(_run(src, args.small_mb, args.workers))
        if args.compare_records and len(trees) == 2:
            lines.append(compare_records(Path(tmp) / "this_tree", Path(tmp) / "baseline"))
        if args.check_identical and len(trees) == 2:
            diff = _same_files(Path(tmp) / "this_tree", Path(tmp) / "baseline")
            shards = sum(1 for p in (Path(tmp) / "this_tree").rglob("*") if p.is_file())
            lines.append(
                f"curated shards of both trees byte-identical: {'yes' if not diff else 'NO'} "
                f"({shards} shards compared{'; differ: ' + ', '.join(diff) if diff else ''})"
            )
        if args.profile:
            for name, src in trees:
                prof = Path(tmp) / f"{name.replace(' ', '_')}.prof"
                _run(src, args.mb, args.workers, profile=prof)
                costs[name] = top_costs(prof, args.profile)
    for name, rs in results.items():
        best = sorted(rs, key=lambda r: r["mb_per_cpu_s"])[len(rs) // 2]
        lines.insert(
            len([ln for ln in lines if ln.startswith("curate (")]), f"curate ({name}): {_line(best)}"
        )
        split = fixed_and_marginal(small[name], rs, args.project_mb) if args.small_mb else {}
        if split:
            lines.append(
                f"split ({name}): fixed {split['fixed_cpu_s']} CPU s per run + marginal "
                f"{split['marginal_mb_per_cpu_s']} MB per CPU s (line through the median CPU s at "
                f"{_median(small[name], 'input_mb')} and {_median(rs, 'input_mb')} MB); "
                f"projected {args.project_mb:g} MB: {split['projected_mb_per_cpu_s']} MB/s per core"
            )
        if args.json:
            print(json.dumps({"tree": name, **best, "median_mb_per_cpu_s": _median(rs, "mb_per_cpu_s"),
                              **split, "top_costs": costs.get(name, [])}))  # fmt: skip
    for name, top in costs.items():
        lines += [f"top {args.profile} costs under cProfile ({name}), {ln}" for ln in top]
    if not args.json:
        print("\n".join(lines))
    load = f"{min(loads):.1f}-{max(loads):.1f}"
    print(f"load average (1 min) during the runs: {load}")
    if args.append:
        import datetime as dt

        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        cmd = "python scripts/bench_curate.py " + " ".join(sys.argv[1:])
        body = "\n".join(f"- {ln}" for ln in lines)
        with open(args.append, "a") as f:
            f.write(
                f"\n## Curation throughput\n\n- date: {when}\n- command: `{cmd.strip()}`\n"
                f"- recipe: configs/data/local-python.yaml on standard-library code; {os.cpu_count()} cores, "
                f"load average {load}; per core = MB / CPU seconds of the run (user + system, workers included)\n\n"
                f"{body}\n"
            )
    if args.check_identical and any("byte-identical: NO" in ln for ln in lines):
        sys.exit(1)


if __name__ == "__main__":
    main()

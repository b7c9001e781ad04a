"""Curation throughput: MB/s of input through the default recipe, per worker and per core (CPU time).

    python scripts/bench_curate.py --mb 20 --workers 1
    python scripts/bench_curate.py --mb 20 --workers 1 --baseline-src /path/to/older/src --rounds 3

`--baseline-src` runs the same benchmark with another checkout's `src` (before/after side by side:
rounds alternate, each in a fresh interpreter, so both see the same machine load). `make bench`
runs it with `--append BENCHMARKS.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "data" / "local-python.yaml"


def _run(src: Path, mb: float, workers: int) -> dict:
    """One benchmark in a fresh interpreter with `src` first on the path."""
    # CPU time is taken here, not by the tree's own bench (an older tree's does not report it)
    code = (
        "import json, resource\n"
        "import codecomplete.data.bench as b\n"
        "def cpu():\n"
        "    a, k = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "    return a.ru_utime + a.ru_stime + k.ru_utime + k.ru_stime\n"
        "spent = []\n"
        "run = b.run_curate\n"
        "def timed(*a, **k):\n"
        "    c0 = cpu(); out = run(*a, **k); spent.append(cpu() - c0); return out\n"
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


def _median(rs: list[dict], key: str) -> float:
    return sorted(r[key] for r in rs)[len(rs) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=20.0, help="MB of standard-library code to curate")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1, help="runs of each tree (the median is reported)")
    p.add_argument("--baseline-src", default=None, help="another checkout's src/ to compare against")
    p.add_argument("--json", action="store_true")
    p.add_argument("--append", default=None, help="append the result as a section of this Markdown file")
    args = p.parse_args()
    trees = [("this tree", SRC)] + ([("baseline", Path(args.baseline_src))] if args.baseline_src else [])
    results: dict[str, list[dict]] = {name: [] for name, _ in trees}
    loads = []
    for _ in range(args.rounds):
        for name, src in trees:
            loads.append(os.getloadavg()[0])
            results[name].append(_run(src, args.mb, args.workers))
    lines = []
    for name, rs in results.items():
        best = sorted(rs, key=lambda r: r["mb_per_cpu_s"])[len(rs) // 2]
        lines.append(f"curate ({name}): {_line(best)}")
        if args.json:
            print(json.dumps({"tree": name, **best, "median_mb_per_cpu_s": _median(rs, "mb_per_cpu_s")}))
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


if __name__ == "__main__":
    main()

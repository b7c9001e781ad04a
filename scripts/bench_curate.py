"""Curation throughput (MB/s of input through the default recipe, per worker).

    python scripts/bench_curate.py --mb 20 --workers 1
    python scripts/bench_curate.py --mb 40 --workers 2 --json

`make bench` runs it with `--append BENCHMARKS.md`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from codecomplete.data.bench import bench_curate  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=20.0, help="MB of standard-library code to curate")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p.add_argument("--append", default=None, help="append the result as a section of this Markdown file")
    args = p.parse_args()
    r = bench_curate(args.mb, args.workers)
    line = (
        f"curate: {r['input_mb']} MB in {r['seconds']} s with {r['workers']} worker(s): "
        f"{r['mb_per_s']} MB/s ({r['mb_per_s_per_worker']} MB/s per worker), {r['kept_documents']} documents kept"
    )
    print(json.dumps(r) if args.json else line)
    if args.append:
        import datetime as dt
        import os

        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        cmd = "python scripts/bench_curate.py " + " ".join(sys.argv[1:])
        with open(args.append, "a") as f:
            f.write(
                f"\n## Curation throughput\n\n- date: {when}\n- command: `{cmd.strip()}`\n"
                f"- recipe: configs/data/local-python.yaml on standard-library code; {os.cpu_count()} cores, "
                f"load average {os.getloadavg()[0]:.1f}\n\n{line}\n"
            )


if __name__ == "__main__":
    main()

"""Curation throughput (MB/s of input through the default recipe, per worker).

    python scripts/bench_curate.py --mb 20 --workers 1
    python scripts/bench_curate.py --mb 40 --workers 2 --json

`make bench` (scripts/bench.py) calls `codecomplete.data.bench.bench_curate` directly.
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
    args = p.parse_args()
    r = bench_curate(args.mb, args.workers)
    if args.json:
        print(json.dumps(r))
    else:
        print(
            f"curate: {r['input_mb']} MB in {r['seconds']} s with {r['workers']} worker(s): "
            f"{r['mb_per_s']} MB/s ({r['mb_per_s_per_worker']} MB/s per worker), {r['kept_documents']} documents kept"
        )


if __name__ == "__main__":
    main()

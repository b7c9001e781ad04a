"""Paired comparison of two `codecomplete eval` results on the same examples.

    python scripts/compare_evals.py old.json new.json [more pairs: old2.json new2.json ...]

For line-completion and FIM results (which keep their examples), the examples both runs scored
are matched by (file, line) and the per-example differences new - old of edit similarity and exact
match are averaged, with their standard error. Two models' numbers on 200 cuts move by more from one
sample of cuts to another than between the models; the paired difference is what says whether the
newer model is better on these cuts (docs/train.md uses it to decide which weights ship).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path


def _examples(result: dict) -> dict[tuple, dict]:
    out = {}
    for e in result.get("examples") or []:
        out[(e.get("file"), e.get("line"), e.get("target"))] = e
    return out


def paired(old: dict, new: dict) -> dict:
    """Per-example differences new - old over the examples both results hold."""
    a, b = _examples(old), _examples(new)
    keys = [k for k in a if k in b]
    if not keys:
        raise ValueError("the two results share no examples (same task, data, --n and --seed?)")
    out = {
        "examples": len(keys),
        "changed": sum(a[k].get("prediction") != b[k].get("prediction") for k in keys),
    }
    for metric in ("edit_similarity", "exact_match"):
        diffs = [float(b[k][metric]) - float(a[k][metric]) for k in keys]
        if metric == "exact_match":  # stored per example as a bool or 0/1: report in percent
            diffs = [100.0 * d for d in diffs]
        se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
        out[metric] = (statistics.mean(diffs), se)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", type=Path, help="pairs of result files: old new [old new ...]")
    args = p.parse_args(argv)
    if len(args.results) % 2:
        p.error("give result files in pairs: old new")
    for old_path, new_path in zip(args.results[::2], args.results[1::2], strict=True):
        old, new = (json.loads(path.read_text()) for path in (old_path, new_path))
        if old.get("task") != new.get("task"):
            print(
                f"{old_path} is {old.get('task')}, {new_path} is {new.get('task')}: not comparable",
                file=sys.stderr,
            )
            return 2
        d = paired(old, new)
        es, em = d["edit_similarity"], d["exact_match"]
        print(
            f"{new_path} - {old_path} ({old.get('task')}, {d['examples']} shared examples, "
            f"{d['changed']} predictions differ): edit similarity {es[0]:+.2f} (standard error {es[1]:.2f}), "
            f"exact match {em[0]:+.2f} points ({em[1]:.2f}); totals "
            f"{old['metrics'].get('edit_similarity', float('nan')):.2f} -> "
            f"{new['metrics'].get('edit_similarity', float('nan')):.2f} ES, "
            f"{old['metrics'].get('exact_match', float('nan')):.2f} -> {new['metrics'].get('exact_match', float('nan')):.2f} EM"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

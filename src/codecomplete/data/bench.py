"""Throughput of the curation pipeline: MB/s of input through the default recipe, per worker.

Two rates: wall-clock (MB / elapsed seconds / workers) and per core (MB / CPU seconds of this process
and its worker processes). On a shared machine the wall-clock rate measures the other tenants too;
the CPU-time rate is what one core of ours does.

The input is a copy of the first `mb` MB of this machine's standard library (sorted paths, so the
same files every time), curated with `configs/data/local-python.yaml`'s steps (all filters, exact
and near dedup, decontamination, redaction) by the local executor with `workers` workers.
"""

from __future__ import annotations

import resource
import shutil
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from codecomplete.data.config import CurateConfig
from codecomplete.data.pipeline import run_curate


def _sample_stdlib(dest: Path, mb: float) -> int:
    root = Path(sysconfig.get_paths()["stdlib"])
    total = 0
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(root)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / rel)
        total += path.stat().st_size
        if total >= mb * 1e6:
            break
    (dest / "LICENSE").write_text("PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2\n")
    return total


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children (the worker processes)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bench_curate(mb: float = 20.0, workers: int = 1, recipe: str | Path | None = None) -> dict[str, Any]:
    """Curate `mb` MB of the stdlib with `workers` workers; returns MB/s overall and per worker."""
    recipe = recipe or Path(__file__).resolve().parents[3] / "configs" / "data" / "local-python.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "stdlib", Path(tmp) / "out"
        src.mkdir()
        nbytes = _sample_stdlib(src, mb)
        cfg = CurateConfig.from_yaml(recipe, out=str(out))
        cfg.sources = CurateConfig.from_dict(
            {"name": "b", "out": str(out), "sources": [{"kind": "local", "paths": [str(src)]}]}
        ).sources
        cfg.executor.workers = workers
        cfg.executor.tasks = max(workers, 2)
        cfg.split.heldout_repos = []
        cfg.progress = False
        cpu0 = _cpu_s()
        t0 = time.perf_counter()
        stats = run_curate(cfg)
        elapsed = time.perf_counter() - t0
        cpu = _cpu_s() - cpu0
    mbs = nbytes / 1e6 / elapsed
    return {
        "name": "curate_throughput",
        "input_mb": round(nbytes / 1e6, 2),
        "workers": workers,
        "seconds": round(elapsed, 2),
        "mb_per_s": round(mbs, 3),
        "mb_per_s_per_worker": round(mbs / workers, 3),
        "cpu_seconds": round(cpu, 2),
        "mb_per_cpu_s": round(nbytes / 1e6 / cpu, 3),
        "kept_documents": stats["output"]["documents"],
    }

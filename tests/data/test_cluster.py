"""The planted corpus curated by datatrove's Ray and Slurm executors gives the same bytes as the
local executor: documents, dropped files and stats.json.

Opt-in (`make test-cluster`, which sets CODECOMPLETE_CLUSTER_TESTS=1, installs `ray` and starts a
one-node Slurm with scripts/cluster/slurm_one_node.sh). The measured times are in docs/curate.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from corpus import build_corpus, recipe  # noqa: E402

from codecomplete.data.config import CurateConfig  # noqa: E402
from codecomplete.data.pipeline import run_curate  # noqa: E402

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(os.environ.get("CODECOMPLETE_CLUSTER_TESTS") != "1", reason="make test-cluster"),
]


def _digest(out: Path) -> dict[str, str]:
    """sha256 of every file a run's consumer reads (not logs or timings)."""
    files = [out / "stats.json", *sorted((out / "documents").rglob("*.jsonl.gz")),
             *sorted((out / "dropped").rglob("*.jsonl.gz"))]  # fmt: skip
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    corpus = build_corpus(tmp_path_factory.mktemp("corpus"))
    out = tmp_path_factory.mktemp("local") / "out"
    t0 = time.perf_counter()
    run_curate(CurateConfig.from_dict(recipe(corpus, out)))
    print(f"\nlocal: {time.perf_counter() - t0:.1f} s")
    return corpus, _digest(out)


def test_ray_run_is_byte_identical_to_local(local_run, tmp_path):
    ray = pytest.importorskip("ray")
    corpus, expected = local_run
    out = tmp_path / "out"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        t0 = time.perf_counter()
        cfg = CurateConfig.from_dict(recipe(corpus, out, executor={"kind": "ray", "tasks": 2, "workers": 2,
                                                                   "ray": {"mem_per_cpu_gb": 0.5}}))  # fmt: skip
        run_curate(cfg)
        print(f"\nray: {time.perf_counter() - t0:.1f} s")
    finally:
        ray.shutdown()
    assert _digest(out) == expected


def test_slurm_run_is_byte_identical_to_local(local_run, tmp_path, monkeypatch):
    if not shutil.which("sbatch") or subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        pytest.skip("no Slurm: run scripts/cluster/slurm_one_node.sh")
    corpus, expected = local_run
    out = tmp_path / "out"
    # the jobs inherit this environment (sbatch --export=ALL): datatrove's launcher and our src
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p.endswith("src"))[:1000])
    t0 = time.perf_counter()
    slurm = {"partition": "cpu", "time": "00:30:00", "cpus_per_task": 1, "mem_per_cpu_gb": 1,
             "slurm_logs_folder": str(tmp_path / "slurm-logs")}  # fmt: skip
    cfg = CurateConfig.from_dict(recipe(corpus, out, executor={"kind": "slurm", "tasks": 2, "slurm": slurm}))
    assert run_curate(cfg) is None  # Slurm runs the stages as chained jobs: the call only submits them
    deadline = time.time() + 900
    while not (out / "stats.json").exists():
        assert time.time() < deadline, subprocess.run(["squeue"], capture_output=True, text=True).stdout
        failed = subprocess.run(["squeue", "-h", "-t", "FAILED"], capture_output=True, text=True).stdout
        assert not failed.strip(), failed
        time.sleep(2)
    print(f"\nslurm: {time.perf_counter() - t0:.1f} s")
    assert _digest(out) == expected

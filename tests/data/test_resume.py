"""A run killed part-way and started again gives byte-identical output to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from corpus import recipe

SRC = Path(__file__).resolve().parents[2] / "src"


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for sub in ("documents", "dropped"):
        for p in sorted((root / sub).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = p.read_bytes()
    out["stats.json"] = (root / "stats.json").read_bytes()
    return out


def _curate(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        [sys.executable, "-m", "codecomplete", "curate", "--config", str(config), "--no-progress"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def test_kill_and_resume_gives_identical_output(curated, tmp_path):
    corpus, reference, _ = curated
    out = tmp_path / "out"
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe(corpus, out)))

    proc = _curate(config)
    marker = out / "logs" / "process" / "completions" / "00000"
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its worker processes, mid-stage
    proc.wait()
    assert marker.exists(), "the run was not killed part-way"
    assert not (out / "stats.json").exists()  # an unfinished folder never looks finished

    proc = _curate(config)
    assert proc.wait(timeout=300) == 0
    assert not list(out.rglob("*.tmp")), "a half-written file was left behind"
    got, want = _files(out), _files(reference)
    assert got.keys() == want.keys()
    assert [k for k in want if got[k] != want[k]] == []

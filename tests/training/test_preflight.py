"""`codecomplete train` checks what can be checked before any rank starts (training/preflight.py):
each bad value fails at once, naming the recipe field and the --set flag, and nothing is launched."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = str(ROOT / "configs/train/tiny-cpu.yaml")


@pytest.fixture
def good(token_dataset, tiny_model_dir) -> list[str]:
    return ["--set", f"data.path={token_dataset}", "--set", f"model.tokenizer={tiny_model_dir}"]


def train(*args: str) -> int:
    from codecomplete.cli import main

    return main(["train", "--config", RECIPE, *args, "--dry-run"])


def test_a_good_recipe_passes(good, capsys, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert train(*good, "--num-gpus", "2") == 0
    assert "deepspeed.launcher.runner" in capsys.readouterr().out


def test_several_token_datasets_pass_as_one(token_dataset, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    two = f"data.path={token_dataset},{token_dataset}"
    assert train("--set", two, "--set", f"model.tokenizer={tiny_model_dir}", "--num-gpus", "2") == 0
    assert "deepspeed.launcher.runner" in capsys.readouterr().out


def _bad_cases(tmp: Path, token_dataset: Path, tiny_model_dir: Path) -> list[tuple[list[str], str]]:
    empty = tmp / "empty"
    empty.mkdir(exist_ok=True)
    broken = tmp / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "meta.json").write_text('{"format": "something-else"}')
    tok = ["--set", f"model.tokenizer={tiny_model_dir}"]
    data = ["--set", f"data.path={token_dataset}"]
    return [
        (["--set", "data.path=/no/such/dir", *tok], "data.path"),
        (["--set", f"data.path={empty}", *tok], "data.path"),
        (["--set", f"data.path={broken}", *tok], "data.path"),
        (["--set", f"data.path={token_dataset},/no/such/dir", *tok], "data.path"),  # each folder checked
        (["--set", "data.train_split=training", *data, *tok], "data.train_split"),
        ([*data, "--set", "model.tokenizer=/no/such/tokenizer"], "model.tokenizer"),
        ([*data, "--set", f"model.tokenizer={empty}"], "model.tokenizer"),
        ([*data, *tok, "--set", "run.zero=zero9"], "run.zero"),
        ([*data, *tok, "--set", "run.precision=fp16"], "run.precision"),
    ]


def test_bad_values_fail_before_launch_naming_the_field(
    tmp_path, token_dataset, tiny_model_dir, capsys, monkeypatch
):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")  # fp16 is refused on the CPU
    for args, field in _bad_cases(tmp_path, token_dataset, tiny_model_dir):
        with pytest.raises(SystemExit) as e:
            train(*args)
        message = str(e.value)
        assert field in message and f"--set {field}=" in message, (args, message)
        assert "deepspeed.launcher" not in capsys.readouterr().out  # nothing was launched


def test_a_missing_data_path_fails_at_once_from_the_command_line(tiny_model_dir):
    # The real command, not --dry-run: it must stop before the launcher starts any rank.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    started = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "codecomplete", "train", "--config", RECIPE, "--set", "data.path=/no/such/dir",
         "--set", f"model.tokenizer={tiny_model_dir}"],  # fmt: skip
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert r.returncode != 0
    assert "data.path" in r.stderr and "--set data.path=" in r.stderr, r.stderr
    assert "deepspeed" not in r.stdout
    print(f"failed in {elapsed:.2f} s (load average {os.getloadavg()[0]:.1f})")


def test_parameter_count_under_zero3():
    # ZeRO-3 leaves each rank an empty shard (numel 0) and the full size in ds_numel.
    from codecomplete.training.model import count_params

    class Param:
        def __init__(self, numel, ds_numel=None):
            self._n = numel
            if ds_numel is not None:
                self.ds_numel = ds_numel

        def numel(self):
            return self._n

    shared = Param(0, 1_000_000)
    model = SimpleNamespace(parameters=lambda: [shared, Param(0, 500_000), shared, Param(10)])
    assert count_params(model) == 1_500_010

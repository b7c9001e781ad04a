"""The bundled model's card: its numbers are what its eval results say, and its commands give them.

Each committed result under models/codecomplete-tiny-py/eval/ whose data ships in the repository is
re-run on its first few examples (the cuts are drawn one after another from the seed, so the first
k of a 200-example run are the cuts of a k-example run) and must give the same greedy predictions;
its headline metrics must be the aggregate of its stored examples and appear in the card.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import pytest

from codecomplete.eval.runner import EvalConfig, run_eval

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "codecomplete-tiny-py"
RESULTS = sorted((MODEL / "eval").glob("*.json"))
CHECK = 4  # examples re-run per result


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _in_repo(path: Path) -> bool:
    data = _load(path)["config"].get("data")
    return data is None or (ROOT / data).exists()  # None: humaneval's own problems


def _fmt(v: float) -> str:
    return f"{v:.2f}"


def test_the_bundled_model_has_results_for_every_task():
    tasks = {_load(p)["task"] for p in RESULTS}
    assert {"perplexity", "line-completion"} <= tasks


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.stem)
def test_headline_numbers_are_the_aggregate_of_the_examples_and_are_in_the_card(path):
    r = _load(path)
    m, ex = r["metrics"], r["examples"]
    if r["task"] in ("line-completion", "fim"):
        assert m["examples"] == len(ex)
        assert m["exact_match"] == pytest.approx(100 * sum(e["exact_match"] for e in ex) / len(ex))
        assert m["edit_similarity"] == pytest.approx(
            sum(e["edit_similarity"] for e in ex) / len(ex), abs=0.01
        )
    elif r["task"] == "perplexity":
        assert m["tokens_scored"] == sum(e["tokens"] for e in ex)
        nll = sum(e["nll"] * e["tokens"] for e in ex) / m["tokens_scored"]
        assert m["perplexity"] == pytest.approx(math.exp(nll), rel=1e-6)
    elif r["task"] == "humaneval":
        assert m["problems"] == len(ex)
        assert m["solved_problems"] == sum(e["correct"] > 0 for e in ex)
    card = (MODEL / "README.md").read_text()
    for name, value in m.items():
        if isinstance(value, float):
            assert f"| {name} | {_fmt(value)} |" in card, f"{path.name}: {name} {value} is not in the card"


@pytest.mark.parametrize("path", [p for p in RESULTS if _in_repo(p)], ids=lambda p: p.stem)
def test_the_first_examples_reproduce(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the stored config names repository-relative paths
    stored = _load(path)
    known = {f.name for f in fields(EvalConfig)}
    config = EvalConfig(**{k: v for k, v in stored["config"].items() if k in known})
    config.n = CHECK
    config.device, config.dtype = "cpu", "float32"
    fresh = run_eval(config)
    for old, new in zip(stored["examples"][:CHECK], fresh["examples"], strict=True):
        if stored["task"] == "perplexity":
            assert (new["start"], new["tokens"]) == (old["start"], old["tokens"])
            assert new["nll"] == pytest.approx(old["nll"], rel=1e-4)
        elif stored["task"] == "humaneval":
            assert new["task_id"] == old["task_id"] and new["correct"] == old["correct"]
            assert [c["text"] for c in new["completions"]] == [c["text"] for c in old["completions"]]
        else:
            assert (new["file"], new["line"], new["target"]) == (old["file"], old["line"], old["target"])
            assert new["prediction"] == old["prediction"]

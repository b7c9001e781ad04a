"""`codecomplete eval --model <folder> --engine`: the tasks through the serving engine in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from codecomplete.eval import tasks
from codecomplete.eval.backends import (
    CompletionRequest,
    EngineBackend,
    LocalBackend,
    build_backend,
    next_line,
)
from codecomplete.eval.inputs import load_token_split
from codecomplete.eval.runner import EvalConfig, run_eval

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "codecomplete-tiny-py"


@pytest.fixture(scope="module")
def engine_backend(tiny_model_dir):
    backend = EngineBackend(str(tiny_model_dir), device="cpu")
    yield backend
    backend.close()


def test_window_scores_are_the_model_s_own(engine_backend, tiny_model_dir, token_dir):
    local = LocalBackend(str(tiny_model_dir), device="cpu")
    toks = load_token_split(token_dir, max_tokens=400).tokens.tolist()
    windows = [toks[0:200], toks[199:399], toks[10:40]]
    for got, want in zip(
        engine_backend.prompt_logprobs_many(windows), local.prompt_logprobs_many(windows), strict=True
    ):
        assert got == pytest.approx(want, abs=1e-4)


def test_requests_decoded_together_equal_each_alone(engine_backend):
    prompts = ["def f(x):\n", "import os\n\n", "class A:\n    def g(self):\n", "x = [", "# a\n" * 20]
    reqs = [CompletionRequest(prompt=p, max_tokens=12) for p in prompts]
    together = [c.texts for c in engine_backend.complete(reqs)]
    alone = [engine_backend.complete([r])[0].texts for r in reqs]
    assert together == alone
    assert all(len(t) == 1 for t in together)


def test_a_line_completion_request_ends_once_its_line_is_written():
    backend = EngineBackend(str(SHIPPED), device="cpu")
    try:
        prompt = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):"
        (out,) = backend.complete([CompletionRequest(prompt=prompt, max_tokens=64, next_line=True)])
        text = out.texts[0]
        line = next_line(text)
        assert line is not None  # the line after the prompt's, complete
        # Cancelled there, not run on to 64 tokens. The step that ended the line may carry a little
        # more: one token, or up to 1 + speculative_tokens when a draft was accepted.
        from transformers import AutoTokenizer

        from codecomplete.engine.config import EngineConfig

        after = text[text.index(line) + len(line) :]
        overshoot = len(AutoTokenizer.from_pretrained(str(SHIPPED))(after)["input_ids"])
        assert overshoot <= 1 + EngineConfig(model="m").speculative_tokens, text
        assert out.prompt_tokens > 0
    finally:
        backend.close()


def test_tasks_end_to_end_through_the_engine(tiny_model_dir, py_dir):
    for task in ("line-completion", "fim"):
        result = run_eval(
            EvalConfig(task=task, model=str(tiny_model_dir), data=str(py_dir), n=4, max_tokens=8, engine=True)
        )
        assert result["model"]["backend"] == "engine" and result["metrics"]["examples"] == 4


def test_engine_is_for_a_model_folder_not_a_server():
    with pytest.raises(ValueError, match="--engine"):
        build_backend(base_url="http://127.0.0.1:9", engine=True)


def test_perplexity_task_agrees_with_the_local_backend(engine_backend, tiny_model_dir, token_dir):
    split = load_token_split(token_dir, max_tokens=600)
    local = LocalBackend(str(tiny_model_dir), device="cpu")
    a = tasks.run_perplexity(engine_backend, split, window=255)
    b = tasks.run_perplexity(local, split, window=255)
    assert a.metrics["tokens_scored"] == b.metrics["tokens_scored"]
    assert a.metrics["nll_per_token"] == pytest.approx(b.metrics["nll_per_token"], rel=1e-5)

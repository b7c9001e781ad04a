"""Every task end to end on a tiny random model folder (CPU), plus the cuts they are built from."""

from __future__ import annotations

import json
import math

import pytest

from codecomplete.eval import tasks
from codecomplete.eval.inputs import load_source_files
from codecomplete.eval.runner import EvalConfig, run_eval


@pytest.fixture(scope="module")
def local_backend(tiny_model_dir):
    from codecomplete.eval.backends import LocalBackend

    return LocalBackend(str(tiny_model_dir), device="cpu")


def test_line_cuts_are_seeded_and_start_at_non_blank_lines(py_dir):
    files, _ = load_source_files(py_dir)
    cuts = tasks.sample_line_cuts(files, 30, seed=1)
    assert cuts == tasks.sample_line_cuts(files, 30, seed=1)
    assert cuts != tasks.sample_line_cuts(files, 30, seed=2)
    for f, i in cuts:
        lines = f.text.splitlines()
        assert lines[i].strip() and any(line.strip() for line in lines[:i])


def test_cuts_are_distinct_and_a_small_set_gives_every_cut_once(py_dir, curated_dir):
    files, _ = load_source_files(py_dir)
    every = {(f.name, i) for f, i in tasks.sample_line_cuts(files, 10_000, seed=0)}
    # every non-blank line below the file's first non-blank one, and nothing else
    assert len(every) == sum(
        max(0, sum(1 for line in f.text.splitlines() if line.strip()) - 1) for f in files
    )
    for n in (5, len(every) - 1, len(every), len(every) + 7):
        cuts = [(f.name, i) for f, i in tasks.sample_line_cuts(files, n, seed=4)]
        assert len(cuts) == len(set(cuts)) == min(n, len(every))
    # The same seed's first cuts do not change with n: a larger set extends a smaller one.
    small = tasks.sample_line_cuts(files, 5, seed=4)
    assert tasks.sample_line_cuts(files, 9, seed=4)[:5] == small

    fim_files, _ = load_source_files(curated_dir)
    fim = [(c.file, c.first_line, c.middle) for c in tasks.sample_fim_cuts(fim_files, 1_000, seed=0)]
    assert len(fim) == len(set(fim)) < 1_000


def test_two_files_with_one_name_give_each_file_its_cuts():
    from codecomplete.eval.inputs import SourceFile

    a = SourceFile("pkg/util.py", "def f(x):\n    y = x\n    return y\n")
    b = SourceFile("pkg/util.py", "def g(x):\n    z = x\n    return z\n")
    lines = tasks.sample_line_cuts([a, b], 100, seed=0)  # 2 cuts per file: all 4, no endless draw
    assert sorted((f.text[:5], i) for f, i in lines) == [
        ("def f", 1),
        ("def f", 2),
        ("def g", 1),
        ("def g", 2),
    ]
    fim = tasks.sample_fim_cuts([a, b], 100, seed=0, max_lines=2)
    assert sorted((c.prefix[:5], c.first_line, c.middle) for c in fim) == [
        ("def f", 2, "    y = x\n"),
        ("def f", 2, "    y = x\n    return y\n"),
        ("def f", 3, "    return y\n"),
        ("def g", 2, "    z = x\n"),
        ("def g", 2, "    z = x\n    return z\n"),
        ("def g", 3, "    return z\n"),
    ]


def test_fim_cuts_are_whole_lines_inside_function_bodies(curated_dir):
    files, source = load_source_files(curated_dir)
    assert source.endswith("test") and {f.name for f in files} == {
        "heldout/pkg/geometry.py",
        "heldout/pkg/text/words.py",
    }
    by_name = {f.name: f.text for f in files}
    for cut in tasks.sample_fim_cuts(files, 40, seed=0, max_lines=3):
        text = by_name[cut.file]
        assert cut.prefix + cut.middle + cut.suffix == text
        assert cut.prefix.endswith("\n") and cut.middle.endswith("\n") and 1 <= cut.middle.count("\n") <= 3
        assert cut.middle.startswith("    ")  # a body line, never the `def` itself
        assert not cut.middle.lstrip().startswith(("def ", "async def ", "class "))


def test_local_fim_prompt_is_the_servers_template_over_separately_tokenised_parts(local_backend):
    from codecomplete.eval.backends import CompletionRequest
    from codecomplete.models import fim

    tok = local_backend.tokenizer
    template = fim.from_name("codecomplete")
    assert local_backend.fim == template
    ids = local_backend.prepare(
        CompletionRequest(prompt="def f(x):\n", suffix="    return y\n", max_tokens=8)
    ).token_ids
    expected = template.encode(
        tok("def f(x):\n", add_special_tokens=False)["input_ids"],
        tok("    return y\n", add_special_tokens=False)["input_ids"],
        tok.convert_tokens_to_ids,
    )
    assert ids == expected
    assert tok.decode(ids) == "<fim_prefix>def f(x):\n<fim_suffix>    return y\n<fim_middle>"


def test_long_prompts_keep_their_end(local_backend):
    from codecomplete.engine.inputs import truncation_step
    from codecomplete.eval.backends import CompletionRequest

    ctx = local_backend.context_length()
    text = "x = 1\n" * 400 + "y = 2\n"
    ids = local_backend.prepare(CompletionRequest(prompt=text, max_tokens=16)).token_ids
    # The room left for 16 new tokens, filled to within one truncation step (the window's start
    # moves in steps: engine/inputs.py truncation_step).
    assert ctx - 16 - truncation_step(ctx) < len(ids) <= ctx - 16
    assert local_backend.tokenizer.decode(ids).endswith("x = 1\ny = 2\n")


def test_line_completion_end_to_end(tiny_model_dir, py_dir):
    result = run_eval(
        EvalConfig(
            task="line-completion",
            model=str(tiny_model_dir),
            data=str(py_dir),
            n=4,
            max_tokens=6,
            device="cpu",
        )
    )
    m = result["metrics"]
    assert m["examples"] == 4 and 0 <= m["exact_match"] <= 100 and 0 <= m["edit_similarity"] <= 100
    assert result["model"]["backend"] == "local" and result["model"]["fim_template"] == "codecomplete"
    files = {f.name: f.text.splitlines() for f in load_source_files(py_dir)[0]}
    for ex in result["examples"]:
        assert ex["target"] == files[ex["file"]][ex["line"] - 1]
        assert "\n" not in ex["prediction"]  # completions end at the end of the line
    json.dumps(result)  # serialisable as is


def test_fim_end_to_end(tiny_model_dir, curated_dir):
    result = run_eval(
        EvalConfig(
            task="fim", model=str(tiny_model_dir), data=str(curated_dir), n=3, max_tokens=6, device="cpu"
        )
    )
    assert result["metrics"]["examples"] == 3 and 0 <= result["metrics"]["exact_match"] <= 100
    assert result["settings"]["fim_template"] == "codecomplete"


def test_perplexity_end_to_end_scores_every_token_once(tiny_model_dir, token_dir, local_backend):
    result = run_eval(
        EvalConfig(task="perplexity", model=str(tiny_model_dir), data=str(token_dir), device="cpu")
    )
    meta = json.loads((token_dir / "meta.json").read_text())
    m = result["metrics"]
    assert result["settings"]["window"] == local_backend.context_length() - 1 == 255
    assert m["tokens_scored"] == meta["splits"]["valid"]["num_tokens"] - 1
    # A random-init model is about as unsure as a uniform guess over its vocabulary.
    assert 1 < m["perplexity"] < 5 * meta["vocab_size"]
    assert m["nll_per_token"] == pytest.approx(math.log(m["perplexity"]))


def test_perplexity_matches_one_forward_pass_over_a_single_window(local_backend, token_dir):
    import torch

    from codecomplete.eval.inputs import load_token_split

    split = load_token_split(token_dir, max_tokens=100)
    res = tasks.run_perplexity(local_backend, split, window=100)
    ids = torch.tensor([split.tokens.tolist()])
    with torch.no_grad():
        loss = local_backend.model(ids, labels=ids).loss.item()  # HF's own mean NLL
    assert res.metrics["nll_per_token"] == pytest.approx(loss, rel=1e-4)


def test_batched_window_scores_equal_one_window_at_a_time(local_backend, token_dir):
    from codecomplete.eval.inputs import load_token_split

    toks = load_token_split(token_dir, max_tokens=700).tokens.tolist()
    windows = [toks[0:120], toks[119:239], toks[238:300], toks[299:419], toks[418:420]]  # mixed lengths
    batched = local_backend.prompt_logprobs_many(windows, batch=2)
    alone = [local_backend.prompt_logprobs(w) for w in windows]
    assert [len(b) for b in batched] == [len(w) - 1 for w in windows]
    for b, a in zip(batched, alone, strict=True):
        assert b == pytest.approx(a, abs=1e-4)


def test_perplexity_on_source_files_scores_each_file_then_its_end_of_text(
    local_backend, py_dir, tiny_model_dir
):
    import torch

    files, _ = load_source_files(py_dir)
    tok = local_backend.tokenizer
    result = run_eval(
        EvalConfig(task="perplexity", model=str(tiny_model_dir), data=str(py_dir), device="cpu")
    )
    stream = [
        t for f in files for t in tok(f.text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ]
    assert result["settings"]["split_documents"] == len(files) > 1
    assert result["metrics"]["tokens_scored"] == len(stream) - 1
    # One window over the smallest file and its end-of-text: the model's own loss on those tokens.
    small = min(files, key=lambda f: len(f.text))
    first = tok(small.text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert len(first) <= local_backend.context_length() - 1  # fits one window
    one = run_eval(
        EvalConfig(task="perplexity", model=str(tiny_model_dir), data=str(py_dir / small.name), device="cpu")
    )
    ids = torch.tensor([first])
    with torch.no_grad():
        loss = local_backend.model(ids, labels=ids).loss.item()
    assert one["metrics"]["nll_per_token"] == pytest.approx(loss, rel=1e-4)


def test_perplexity_on_source_files_needs_the_model_folder(fake_server, py_dir):
    with pytest.raises(ValueError, match="needs the model's tokenizer"):
        run_eval(EvalConfig(task="perplexity", base_url=fake_server.url, data=str(py_dir)))


def test_humaneval_end_to_end_on_a_tiny_model(tiny_model_dir, problems_file):
    result = run_eval(
        EvalConfig(
            task="humaneval",
            model=str(tiny_model_dir),
            data=str(problems_file),
            samples=2,
            max_tokens=4,
            timeout_s=5,
            device="cpu",
        )
    )
    m = result["metrics"]
    assert m["problems"] == 2 and m["samples_per_problem"] == 2
    assert m["candidates_passed"] + m["candidates_failed"] + m["candidates_timeout"] == 4
    assert 0 <= m["pass@1"] <= 100
    assert all(len(ex["completions"]) == 2 for ex in result["examples"])


def test_documents_split_can_be_named_and_unfinished_folders_are_refused(curated_dir, tmp_path):
    files, source = load_source_files(curated_dir, "valid")
    assert source.endswith("valid") and [f.name for f in files] == ["valid/pkg/other.py"]
    (tmp_path / "documents" / "test").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="stats.json"):
        load_source_files(tmp_path)

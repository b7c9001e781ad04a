"""The one-token decode step without the model's forward (engine/fast_decode.py), eager and
compiled: same tokens as the model's own forward, batch invariance kept, and a compilation that
fails falls back to eager with a log line."""

from __future__ import annotations

import logging

import pytest
import torch
from engine_helpers import greedy, ids_of, make_core, run_until_idle, submit

from codecomplete.engine import fast_decode

PROMPTS = [
    "def add(a, b):\n    return",
    "import os\nimport sys\n\n\nclass Config:\n    def __init__(self",
    "x = [",
]


def _generate(core, prompts, max_tokens=12, **params):
    outs = [submit(core, f"r{i}", greedy(max_tokens, **params), p) for i, p in enumerate(prompts)]
    run_until_idle(core)
    return [ids_of(o) for o in outs]


@pytest.mark.parametrize("arch", ["gpt2", "gpt_bigcode", "llama", "qwen2"])
def test_fast_decode_writes_the_tokens_of_the_models_own_forward(arch, tiny_model_factory, monkeypatch):
    model_dir = tiny_model_factory(arch)
    fast = make_core(model_dir, prefix_cache_mb=0)
    assert isinstance(fast.runner.fast, (fast_decode.GPT2Decoder, fast_decode.LlamaDecoder))
    monkeypatch.setenv("CODECOMPLETE_FAST_DECODE", "0")
    slow = make_core(model_dir, prefix_cache_mb=0)
    assert slow.runner.fast is None
    # Alone (one row), together (three rows of different lengths), and sampled with a seed (a
    # lone sampled row runs with its ghost twin, the gathered path).
    for prompts in (PROMPTS[:1], PROMPTS):
        assert _generate(fast, prompts) == _generate(slow, prompts)
    sampled = dict(temperature=0.8, seed=7)
    outs_fast = submit(fast, "s", _sampled(10, **sampled), PROMPTS[1])
    outs_slow = submit(slow, "s", _sampled(10, **sampled), PROMPTS[1])
    run_until_idle(fast)
    run_until_idle(slow)
    assert ids_of(outs_fast) == ids_of(outs_slow)


def _sampled(max_tokens, **kw):
    from codecomplete.engine.types import SamplingParams

    return SamplingParams(max_tokens=max_tokens, ignore_eos=True, **kw)


@pytest.mark.parametrize("arch", ["gpt_neo", "codegen"])
def test_families_without_a_fast_step_keep_the_models_forward(arch, tiny_model_factory):
    core = make_core(tiny_model_factory(arch))
    assert getattr(core.runner, "fast", None) is None  # the dynamic-cache families
    assert _generate(core, PROMPTS[:1], 4)[0]


def test_a_failing_compilation_falls_back_to_eager_and_says_so(tiny_model_dir, monkeypatch, caplog):
    def broken_compile(fn, **kwargs):
        def compiled(*args, **kw):
            raise torch._dynamo.exc.TorchDynamoException("no C++ compiler on this machine")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    with caplog.at_level(logging.WARNING):
        core = make_core(tiny_model_dir, prefix_cache_mb=0, compile="on")
    assert isinstance(core.runner.fast, fast_decode.CompiledDecoder)
    assert "no C++ compiler" in (core.runner.fast.failed or "")
    assert any("decoding without compilation" in r.message for r in caplog.records)
    eager = make_core(tiny_model_dir, prefix_cache_mb=0)
    assert _generate(core, PROMPTS) == _generate(eager, PROMPTS)


def test_model_errors_are_not_mistaken_for_compile_errors(tiny_model_dir, monkeypatch):
    """A forward that fails on its input raises as it does eagerly (the engine pins it on its rows)
    and does not switch compilation off."""

    def compile_that_fails_at_run_time(fn, **kwargs):
        def compiled(*args, **kw):
            raise RuntimeError("index out of range in self")

        return compiled

    monkeypatch.setattr(torch, "compile", compile_that_fails_at_run_time)
    with pytest.raises(RuntimeError, match="index out of range"):
        make_core(tiny_model_dir, prefix_cache_mb=0, compile="on")  # warm-up runs the decoder


@pytest.mark.slow
def test_the_compiled_decode_step_writes_the_eager_tokens(tiny_model_dir):
    """A real torch.compile (Inductor: needs a C++ compiler) of the tiny test model: warm at
    startup, no recompilation for new batch sizes or widths, and the same greedy tokens."""
    compiled = make_core(tiny_model_dir, prefix_cache_mb=0, compile="on")
    dec = compiled.runner.fast
    assert isinstance(dec, fast_decode.CompiledDecoder)
    if dec.failed is not None:
        pytest.skip(f"torch.compile does not work on this machine: {dec.failed}")
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    eager = make_core(tiny_model_dir, prefix_cache_mb=0, compile="off")
    for prompts in (PROMPTS[:1], PROMPTS, PROMPTS * 3):
        assert _generate(compiled, prompts, 20) == _generate(eager, prompts, 20)
    assert dec.failed is None
    assert counters["stats"]["unique_graphs"] == graphs  # the warm-up compiled every shape used

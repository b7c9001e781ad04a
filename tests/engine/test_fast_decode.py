"""The one-token decode step without the model's forward (engine/fast_decode.py), eager and
compiled: same tokens as the model's own forward, batch invariance kept, and a compilation that
fails falls back to eager with a log line."""

from __future__ import annotations

import logging
from pathlib import Path

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


@pytest.mark.parametrize("arch", ["gpt2", "gpt_bigcode", "llama", "qwen2", "codegen", "gpt_neo"])
def test_fast_decode_writes_the_tokens_of_the_models_own_forward(arch, tiny_model_factory, monkeypatch):
    model_dir = tiny_model_factory(arch)
    fast = make_core(model_dir, prefix_cache_mb=0)
    decoders = (
        fast_decode.GPT2Decoder,
        fast_decode.LlamaDecoder,
        fast_decode.CodeGenDecoder,
        fast_decode.GPTNeoDecoder,
    )
    assert isinstance(fast.runner.fast, decoders)
    monkeypatch.setenv("CODECOMPLETE_FAST_DECODE", "0")
    slow = make_core(model_dir, prefix_cache_mb=0)
    assert getattr(slow.runner, "fast", None) is None  # GPT-Neo: the dynamic cache
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


def test_gpt_neo_without_its_decoder_keeps_the_dynamic_cache(tiny_model_factory, monkeypatch):
    """GPT-Neo's own attention cannot read the slot cache: without fast_decode.py's decoder
    (CODECOMPLETE_FAST_DECODE=0) it runs on the dynamic cache, and still generates."""
    monkeypatch.setenv("CODECOMPLETE_FAST_DECODE", "0")
    core = make_core(tiny_model_factory("gpt_neo"))
    assert type(core.runner).__name__ == "ModelRunner"
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
@pytest.mark.parametrize("graphs", [False, True], ids=["cpu", "cuda-graphs-configuration"])
def test_the_compiled_decode_step_writes_the_eager_tokens(tiny_model_dir, graphs):
    """A real torch.compile (Inductor: needs a C++ compiler) of the tiny test model: warm at
    startup, no recompilation for new batch sizes or widths, and the same greedy tokens. Also in
    the configuration CUDA gets (rows padded to buckets, a lone row to two, widths rounded,
    mode "reduce-overhead"), which on CPU tensors compiles and runs without recording graphs:
    what it checks is that no new shape recompiles after the warm-up (static shapes did, for every
    width) and that the padding rows change nothing.

    In a fresh interpreter, as a server starts: earlier tests in this process import the stdlib's
    `distutils`, after which Inductor's C++ builder cannot import setuptools' copy of it (a real
    failure mode, which the fallback test covers; here it would only hide this check)."""
    # CUDA's configuration on the bundled model: trained, its tokens show what a random model's
    # do not (a lone row reading columns past its end changed them; the random model's stayed)
    model = Path(__file__).parents[2] / "models" / "codecomplete-tiny-py" if graphs else tiny_model_dir
    result = compiled_vs_eager_in_a_fresh_interpreter(model, graphs=graphs)
    if result["failed"] is not None:
        pytest.skip(f"torch.compile does not work on this machine: {result['failed']}")
    assert result["compiled"] == result["eager"]
    assert result["new_graphs"] == 0  # the warm-up compiled every shape used


def compiled_vs_eager_in_a_fresh_interpreter(model_dir, graphs: bool = False, device: str = "cpu") -> dict:
    """compiled_vs_eager() in a new Python process (what the compiled-step tests compare)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    src = here.parents[1] / "src"
    code = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(here)!r}, {str(src)!r}]\n"
        "from test_fast_decode import compiled_vs_eager\n"
        f"print(json.dumps(compiled_vs_eager({str(model_dir)!r}, graphs={graphs}, device={device!r})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compiled_vs_eager(model_dir: str, graphs: bool = False, device: str = "cpu") -> dict:
    from torch._dynamo.utils import counters

    if graphs:  # as on CUDA (this runs in its own interpreter: the patch ends with it)
        init = fast_decode.CompiledDecoder.__init__
        fast_decode.CompiledDecoder.__init__ = lambda self, dec, device, rows, **kw: init(
            self, dec, device, rows, graphs=True, **kw
        )
    # Four slots: batches of 1-4 rows and, in _staggered, rows leaving and joining; and a core with
    # one slot, whose lone row has no slot after it to pad into. No drafts, so every decode step is
    # the one-token step that is compiled.
    opts = dict(prefix_cache_mb=0, speculative_tokens=0, device=device)
    compiled = make_core(model_dir, compile="on", max_batch_size=4, **opts)
    single = make_core(model_dir, compile="on", max_batch_size=1, **opts)
    for dec in (compiled.runner.fast, single.runner.fast):
        assert isinstance(dec, fast_decode.CompiledDecoder)
        assert dec.graphs == graphs
        if dec.failed is not None:
            return dict(failed=dec.failed)
    graphs = counters["stats"]["unique_graphs"]
    eager = make_core(model_dir, compile="off", max_batch_size=4, **opts)
    runs = (PROMPTS[:1], PROMPTS, PROMPTS * 3, [PROMPTS[1] * 8])  # the last one: widths 128, 192
    # The one-slot core: a long prompt, then a short one (its slot's columns past its end still
    # hold the long one's keys: reading them would change its tokens).
    lone = (runs[-1], PROMPTS[:1])
    out = dict(
        compiled=[_generate(compiled, p, 20) for p in runs]
        + [_staggered(compiled)]
        + [_generate(single, p, 20) for p in lone],
        eager=[_generate(eager, p, 20) for p in runs]
        + [_staggered(eager)]
        + [_generate(eager, p, 20) for p in lone],
        failed=compiled.runner.fast.failed or single.runner.fast.failed,
    )
    out["new_graphs"] = counters["stats"]["unique_graphs"] - graphs
    return out


def _staggered(core) -> list[list[int]]:
    """Three requests joining one after another while the ones before decode, leaving before the
    last (whose row then moves into a freed slot: slot_runner's `drop`)."""
    outs = []
    for i, (n, prompt) in enumerate(zip((6, 10, 30), (PROMPTS[0], PROMPTS[2], PROMPTS[1]), strict=True)):
        outs.append(submit(core, f"s{i}", greedy(n), prompt))
        for _ in range(2):
            core.step()
    run_until_idle(core)
    return [ids_of(o) for o in outs]


@pytest.mark.parametrize("arch", ["gpt_neo", "codegen"])
def test_a_long_prompt_past_the_local_window_decodes_as_generate(arch, tmp_path):
    """Prompts and completions longer than GPT-Neo's local attention window (16 positions here):
    the decoder's banded mask, in the prompt's multi-token step and in one-token steps alone and in
    a batch (speculative decoding on, as served), gives model.generate's greedy tokens (which use the model's
    own banded causal mask). CodeGen rides along: positions far into its rotary table."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codecomplete.models.tiny import tiny_config

    shipped = Path(__file__).parents[2] / "models" / "codecomplete-tiny-py"
    torch.manual_seed(0)
    cfg = tiny_config(arch, 8192, n_ctx=256, width=64, layers=2)
    if arch == "gpt_neo":
        cfg.window_size = 16
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(shipped).save_pretrained(tmp_path)
    prompts = [
        "import os\nimport sys\n\n\ndef main(argv):\n    for arg in argv:\n        print(arg, file=sys.stderr)\n",
        "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
        "        self.items.append(item)\n",
    ]
    core = make_core(tmp_path)
    assert core.runner.fast is not None
    model, tok = core.runner.model, core.tokenizer
    assert all(len(tok(p)["input_ids"]) > 2 * 16 for p in prompts)

    def reference(prompt: str) -> list[int]:
        ids = torch.tensor([tok(prompt)["input_ids"]])
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=24,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
        return out[0, ids.shape[1] :].tolist()

    expected = [reference(p) for p in prompts]
    assert [_generate(core, [p], 24)[0] for p in prompts] == expected  # alone
    assert _generate(core, prompts, 24) == expected  # together

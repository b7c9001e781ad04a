"""Speculative decoding with prompt-lookup drafts (engine/speculate.py):
the drafts are what earlier context suggests, the engine keeps the tokens the model agrees with,
and a request gets the same tokens, text and finish as without speculation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import finish_of, greedy, ids_of, make_core, run_until_idle, submit, text_of

from codecomplete.engine.speculate import PromptLookup
from codecomplete.engine.types import SamplingParams

SHIPPED = Path(__file__).parents[2] / "models" / "codecomplete-tiny-py"
REPEATING = "def f(x):\n    return x + 1\n\n\ndef g(x):\n    return x + 1\n\n\ndef h(x):\n    return x"


# --- the drafts (no torch) ---------------------------------------------------------------------


def test_a_draft_is_what_followed_the_latest_earlier_occurrence_of_the_tail():
    #        0  1  2  3  4  5  6  7  8  9
    tokens = [5, 6, 7, 8, 1, 5, 6, 9, 2, 5, 6]
    # tail (5, 6) occurred at 0 and 5; the latest is 5, followed by 9, 2, 5, 6
    assert PromptLookup(tokens).propose(3) == [9, 2, 5]
    assert PromptLookup(tokens).propose(10) == [9, 2, 5, 6]  # up to the end of what was fed


def test_the_longest_matching_tail_wins():
    #        0  1  2  3  4  5  6  7  8  9  10
    tokens = [2, 3, 4, 8, 0, 3, 4, 7, 2, 3, 4]
    # (2, 3, 4) occurred at 0 (then 8); (3, 4) last at 5 (then 7): the longer match wins
    assert PromptLookup(tokens).propose(1) == [8]
    assert PromptLookup(tokens, min_n=2, max_n=2).propose(1) == [7]


def test_no_draft_without_an_earlier_occurrence():
    assert PromptLookup([1, 2, 3, 4]).propose(4) == []
    assert PromptLookup([1]).propose(4) == []
    assert PromptLookup([]).propose(4) == []
    assert PromptLookup([1, 2, 1, 2]).propose(0) == []


def test_a_match_across_token_boundaries_is_not_a_match():
    # As int32 bytes, the tail (1, 0) = 01 00 00 00 00 00 00 00 also appears one byte into
    # (256, 0): 00 [01 00 00 00 00 00 00 00] -- not token-aligned, so not an occurrence.
    assert PromptLookup([256, 0, 0, 7, 1, 0]).propose(3) == []
    assert PromptLookup([256, 0, 0, 7, 1, 0, 4, 1, 0]).propose(3) == [4, 1, 0]


def test_extend_appends_what_was_fed():
    look = PromptLookup([1, 2, 3])
    assert look.propose(2) == []
    look.extend([9, 1, 2])
    assert look.length == 6
    assert look.propose(2) == [3, 9]


def test_the_draft_length_shrinks_while_drafts_fail_and_grows_back():
    look = PromptLookup([1, 2, 3, 4, 5, 6, 1, 2])
    assert look.propose(4) == [3, 4, 5, 6]
    look.record(4, 0, k=4)  # rejected outright
    assert look.propose(4) == [3, 4]
    look.record(2, 0, k=4)
    assert look.propose(4) == [3]
    look.record(1, 1, k=4)  # taken whole
    assert look.propose(4) == [3, 4]
    look.record(2, 1, k=4)  # partly: unchanged
    assert look.propose(4) == [3, 4]


# --- the engine ----------------------------------------------------------------------------------


def _run(core, prompt, params, rid="r"):
    outs = submit(core, rid, params, prompt)
    run_until_idle(core)
    return ids_of(outs), text_of(outs), finish_of(outs)


@pytest.mark.parametrize("arch", ["gpt2", "gpt_bigcode", "llama", "qwen2", "codegen", "gpt_neo"])
def test_speculation_gives_the_tokens_of_plain_decoding(arch, tiny_model_factory):
    model_dir = tiny_model_factory(arch)
    spec = make_core(model_dir, prefix_cache_mb=0, speculative_tokens=4)
    plain = make_core(model_dir, prefix_cache_mb=0, speculative_tokens=0)
    for i, prompt in enumerate((REPEATING, "import os\nimport sys\nimport os\nimport", "x = [")):
        assert _run(spec, prompt, greedy(40), f"s{i}") == _run(plain, prompt, greedy(40), f"p{i}")
    assert spec.metrics()["spec_draft_tokens_total"] > 0  # a random model's greedy output loops
    assert plain.metrics()["spec_draft_tokens_total"] == 0


def test_a_repetitive_completion_takes_fewer_forwards():
    """The shipped model continues a repeated pattern: most drafted tokens are accepted, so 48
    tokens take far fewer engine steps than 48."""
    core = make_core(SHIPPED, prefix_cache_mb=0, speculative_tokens=4)
    plain = make_core(SHIPPED, prefix_cache_mb=0, speculative_tokens=0)
    outs = submit(core, "r", greedy(48), REPEATING)
    steps = run_until_idle(core)
    assert ids_of(outs) == _run(plain, REPEATING, greedy(48))[0]
    m = core.metrics()
    assert m["spec_accepted_tokens_total"] > 0
    assert steps < 48 - m["spec_accepted_tokens_total"] / 2


@pytest.mark.parametrize(
    "params",
    [
        greedy(3),  # max_tokens inside the first draft
        greedy(30, stop=["\n\n"]),  # a stop string
        greedy(30, frequency_penalty=0.8, presence_penalty=0.5),  # penalties see each kept token
        greedy(30, logit_bias={13: -100.0}),
        SamplingParams(max_tokens=20, temperature=0.0),  # EOS may end it mid-draft
        greedy(12, logprobs=2),
    ],
    ids=["max-tokens", "stop", "penalties", "bias", "eos", "logprobs"],
)
def test_what_ends_or_shapes_a_completion_acts_inside_a_draft(params, tiny_model_dir):
    spec = make_core(tiny_model_dir, prefix_cache_mb=0)
    plain = make_core(tiny_model_dir, prefix_cache_mb=0, speculative_tokens=0)
    a = submit(spec, "a", params, REPEATING)
    b = submit(plain, "b", params, REPEATING)
    run_until_idle(spec)
    run_until_idle(plain)
    assert (ids_of(a), text_of(a), finish_of(a)) == (ids_of(b), text_of(b), finish_of(b))
    # Logprobs: the same entries (several per event now), values equal up to float rounding.
    lp_a = [e for o in a for c in o.choices for e in c.logprobs or []]
    lp_b = [e for o in b for c in o.choices for e in c.logprobs or []]
    assert [(e.token, e.text_offset, sorted(e.top)) for e in lp_a] == [
        (e.token, e.text_offset, sorted(e.top)) for e in lp_b
    ]
    assert [e.logprob for e in lp_a] == pytest.approx([e.logprob for e in lp_b], abs=1e-4)


def test_drafts_stop_at_the_end_of_the_context(tiny_model_dir):
    """A prompt a few tokens short of the context: drafts are cut to the positions left, and the
    completion ends where plain decoding ends it."""
    spec = make_core(tiny_model_dir, prefix_cache_mb=0)
    plain = make_core(tiny_model_dir, prefix_cache_mb=0, speculative_tokens=0)
    ctx = spec.spec.context_length
    ids = spec.tokenizer(REPEATING * 40)["input_ids"][: ctx - 6]
    a = submit(spec, "a", greedy(30), prompt_token_ids=ids)
    b = submit(plain, "b", greedy(30), prompt_token_ids=ids)
    run_until_idle(spec)
    run_until_idle(plain)
    assert ids_of(a) == ids_of(b)
    assert finish_of(a) == finish_of(b) == "length"
    assert spec.metrics()["spec_draft_tokens_total"] > 0


def _sampled(seed: int, temperature: float = 0.7, n: int = 30) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=temperature, top_p=0.95, seed=seed, ignore_eos=True)


@pytest.mark.parametrize("arch", ["gpt2", "gpt_bigcode", "llama", "qwen2", "codegen", "gpt_neo"])
def test_exact_verify_has_the_bits_of_one_token_steps(arch, tiny_model_factory):
    """The runner checks a draft with the one-token step's kernels: the logits at every drafted
    position are bit-identical to those of one-token steps fed the same tokens, for a batch and
    for a lone row with its ghost twin."""
    model_dir = tiny_model_factory(arch)
    for prompts in (("def f(x):\n    return x", "import os\nimport", "x = [1, 2, 3]\ny = "), ("class A:\n",)):
        core = make_core(model_dir, prefix_cache_mb=0, speculative_tokens=0)
        assert core.runner.exact_verify
        for i, p in enumerate(prompts):
            submit(core, f"r{i}", _sampled(i), p)
        for _ in range(4):
            core.step()
        runner, batch = core.runner, core.batch
        assert batch.rows == len(prompts) and batch.ghost == (len(prompts) == 1)
        saved = [(layer.k.clone(), layer.v.clone()) for layer in runner.cache.layers]
        pos, nxt = batch.pos.clone(), batch.next_ids.clone()
        steps = []
        for _ in range(4):
            logits = runner.decode(batch)
            steps.append(logits.clone())
            batch.set_next(logits.argmax(-1).tolist())
        drafts = [[int(steps[j][i].argmax()) for j in range(3)] for i in range(batch.rows)]
        for exact in (True, False):
            for layer, (k, v) in zip(runner.cache.layers, saved, strict=True):
                layer.k.copy_(k)
                layer.v.copy_(v)
            batch.pos, batch.next_ids = pos.clone(), nxt.clone()
            logits = runner.verify(batch, drafts, exact=exact)
            same = [torch.equal(logits[:, j], steps[j]) for j in range(4)]
            if exact:
                assert same == [True] * 4
            else:  # one GEMM for a row's queries rounds differently: what exact is for
                assert max((logits[:, j] - steps[j]).abs().max().item() for j in range(4)) < 1e-3


@pytest.mark.parametrize("arch", ["gpt2", "gpt_bigcode", "llama", "qwen2"])
def test_sampled_rows_speculate_and_draw_the_tokens_of_plain_decoding(arch, tiny_model_factory):
    """Seeded sampled requests, alone (ghost twin) and batched with a greedy one (3 rows, within
    EXACT_SPEC_MAX_ROWS), get drafts and exactly the tokens they get without speculation."""
    model_dir = tiny_model_factory(arch)
    prompts = [REPEATING, "import os\nimport sys\nimport os\nimport", "def f(a):\n    return a\n" * 3]
    runs = {}
    for k in (4, 0):
        core = make_core(model_dir, prefix_cache_mb=0, speculative_tokens=k)
        lone = submit(core, "lone", _sampled(7, 0.05, 40), REPEATING)  # nearly greedy: it loops
        run_until_idle(core)
        lone_drafts = core.metrics()["spec_draft_tokens_total"]
        outs = [
            submit(core, f"r{i}", _sampled(i, (0.05, 0.8)[i // 2]) if i != 1 else greedy(30), p)
            for i, p in enumerate(prompts)
        ]
        run_until_idle(core)
        runs[k] = [ids_of(o) for o in (lone, *outs)], lone_drafts, core.metrics()
    assert runs[4][0] == runs[0][0]
    assert runs[4][1] > 0  # the lone sampled row drafted (no ghost needed for a multi-token check)
    assert runs[4][2]["spec_draft_tokens_total"] > runs[4][1]
    assert runs[0][2]["spec_draft_tokens_total"] == 0


def test_more_sampled_rows_than_the_exact_check_pays_for_decode_plainly(tiny_model_dir):
    """The exact check rereads the KV once per drafted position: beyond EXACT_SPEC_MAX_ROWS rows
    with a sampled one among them, plain steps run; greedy rows that many still draft."""
    from codecomplete.engine.core import EXACT_SPEC_MAX_ROWS

    n = EXACT_SPEC_MAX_ROWS + 1
    core = make_core(tiny_model_dir, prefix_cache_mb=0)
    outs = [submit(core, f"s{i}", _sampled(i, 0.05, 20), REPEATING) for i in range(n)]
    while core.step() and not any(finish_of(o) for o in outs):
        pass
    assert core.metrics()["spec_draft_tokens_total"] == 0
    run_until_idle(core)
    for i in range(n):
        submit(core, f"g{i}", greedy(20), REPEATING)
    run_until_idle(core)
    assert core.metrics()["spec_draft_tokens_total"] > 0


def test_without_an_exact_check_sampled_rows_are_not_drafted(tiny_model_dir, monkeypatch):
    """Without the fast decoder (CODECOMPLETE_FAST_DECODE=0: the model's forward checks drafts,
    with other kernels than its one-token steps) nothing is drafted while a sampled row runs,
    alone or beside a greedy one; greedy rows alone still are."""
    monkeypatch.setenv("CODECOMPLETE_FAST_DECODE", "0")
    core = make_core(tiny_model_dir, prefix_cache_mb=0)
    assert not core.runner.exact_verify
    submit(core, "s", _sampled(3, 0.05, 20), REPEATING)
    run_until_idle(core)
    assert core.metrics()["spec_draft_tokens_total"] == 0
    a = submit(core, "a", greedy(20), REPEATING)
    b = submit(core, "b", _sampled(3, 0.05, 20), REPEATING + "\n")
    while core.step() and not (finish_of(a) or finish_of(b)):
        pass
    assert core.metrics()["spec_draft_tokens_total"] == 0  # not until one of them finished
    run_until_idle(core)
    submit(core, "g", greedy(30), REPEATING)
    run_until_idle(core)
    assert core.metrics()["spec_draft_tokens_total"] > 0


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_batched_greedy_rows_speculate_and_keep_their_tokens(arch, tiny_model_factory):
    """Rows of different lengths decode together with drafts of different lengths (some none),
    one joins mid-way and one finishes early: each gets the tokens of plain decoding."""
    model_dir = tiny_model_factory(arch)
    prompts = [
        REPEATING,
        "import os\nimport sys\nimport os\nimport",
        "x = [",
        "def f(a):\n    return a\n" * 3,
    ]
    runs = {}
    for k in (4, 0):
        core = make_core(model_dir, prefix_cache_mb=0, speculative_tokens=k)
        outs = [submit(core, f"r{i}", greedy(8 if i == 2 else 30), p) for i, p in enumerate(prompts[:3])]
        for _ in range(3):
            core.step()
        outs.append(submit(core, "late", greedy(30), prompts[3]))
        run_until_idle(core)
        runs[k] = ([(ids_of(o), text_of(o), finish_of(o)) for o in outs], core.metrics())
    assert runs[4][0] == runs[0][0]
    assert runs[4][1]["spec_draft_tokens_total"] > 0
    assert runs[0][1]["spec_draft_tokens_total"] == 0


def test_no_draft_runs_past_max_tokens():
    """A draft never holds more tokens than the request can still take (the fed token yields one
    more): checked at every speculative step of the shipped model continuing a repeated pattern."""
    core = make_core(SHIPPED, prefix_cache_mb=0)
    calls = []
    verify = core.runner.verify

    def recording(batch, drafts, **kwargs):
        calls.append((len(drafts[0]), len(batch.seqs[0].output_ids)))
        return verify(batch, drafts, **kwargs)

    core.runner.verify = recording
    outs = submit(core, "r", greedy(12), REPEATING)
    run_until_idle(core)
    assert len(ids_of(outs)) == 12
    assert calls  # the pattern repeats: drafts were checked
    assert all(n <= 12 - produced - 1 for n, produced in calls)

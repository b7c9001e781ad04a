"""Generation behaviour on a tiny GPT-2 (CPU, float32), driving the engine loop step by step."""

from __future__ import annotations

import pytest
import torch
from engine_helpers import (
    finish_of,
    greedy,
    ids_of,
    make_core,
    run_until_idle,
    submit,
    text_of,
    wrap_forward,
)

from codecomplete.engine.client import QueueFullError
from codecomplete.engine.detokenizer import IncrementalDetokenizer
from codecomplete.engine.types import GenerationRequest, SamplingParams

PROMPT = "def fibonacci(n):\n    if n < 2:\n        return n\n    return"


def sampled(seed: int, **kw) -> SamplingParams:
    return SamplingParams(
        max_tokens=24, temperature=0.9, top_p=0.95, top_k=100, seed=seed, ignore_eos=True, **kw
    )


def test_batch_invariance_16_identical_greedy(gpt2_core):
    solo = submit(gpt2_core, "solo", greedy(24), PROMPT)
    run_until_idle(gpt2_core)
    many = [submit(gpt2_core, f"b{i}", greedy(24), PROMPT) for i in range(16)]
    gpt2_core.step()
    assert gpt2_core.metrics()["running"] == 16  # all sixteen really ran together
    run_until_idle(gpt2_core)
    assert all(ids_of(o) == ids_of(solo) for o in many)
    assert all(text_of(o) == text_of(solo) for o in many)


def test_seeded_requests_match_their_solo_runs_inside_a_mixed_batch(gpt2_core):
    prompts = ["import sys\n", PROMPT, "class A:\n", "x = [", "# comment\n" * 3]
    solos = []
    for i, p in enumerate(prompts):
        solos.append(submit(gpt2_core, f"s{i}", sampled(seed=100 + i), p))
        run_until_idle(gpt2_core)
    batch = [submit(gpt2_core, f"m{i}", sampled(seed=100 + i), p) for i, p in enumerate(prompts)]
    extra = [submit(gpt2_core, f"g{i}", greedy(30), "def") for i in range(3)]  # other traffic
    run_until_idle(gpt2_core)
    for solo, mixed in zip(solos, batch, strict=True):
        assert ids_of(mixed) == ids_of(solo)
    assert len({tuple(ids_of(o)) for o in batch}) > 1  # the seeds really differ
    assert all(len(ids_of(o)) == 30 for o in extra)


def test_prefix_reuse_gives_the_same_output(tiny_model_dir):
    core = make_core(tiny_model_dir, prefix_min_tokens=4)
    base = PROMPT * 3
    keystrokes = [base + "x" * k for k in range(1, 6)]
    with_reuse = []
    for p in keystrokes:
        with_reuse.append(submit(core, p, greedy(16), p))
        run_until_idle(core)
    m = core.metrics()
    assert m["prefix_cache_hit_rate"] >= 0.75 and m["prefix_cache_tokens_reused_total"] > 0
    plain = make_core(tiny_model_dir, prefix_cache_mb=0)
    for p, reused in zip(keystrokes, with_reuse, strict=True):
        fresh = submit(plain, p, greedy(16), p)
        run_until_idle(plain)
        assert ids_of(reused) == ids_of(fresh)


def test_n_choices_share_a_prefill_and_finish_once_each(gpt2_core):
    outs = submit(gpt2_core, "n", sampled(seed=7, n=3), PROMPT)
    steps = run_until_idle(gpt2_core)
    assert steps <= 25  # one prefill + decode steps, not three prefills one after another
    texts = [text_of(outs, i) for i in range(3)]
    assert all(finish_of(outs, i) == "length" for i in range(3))
    assert len(set(texts)) > 1
    assert outs[-1].finished and outs[-1].num_generated_tokens == 3 * 24
    greedy3 = submit(gpt2_core, "g", greedy(12, n=3), PROMPT)
    solo = submit(gpt2_core, "g1", greedy(12), PROMPT)
    run_until_idle(gpt2_core)
    assert [ids_of(greedy3, i) for i in range(3)] == [ids_of(solo)] * 3


def test_best_of_returns_the_highest_mean_logprob(gpt2_core):
    all4 = submit(gpt2_core, "all", sampled(seed=3, n=4, logprobs=0), PROMPT)
    best = submit(gpt2_core, "best", sampled(seed=3, n=1, best_of=4), PROMPT)
    run_until_idle(gpt2_core)
    means = []
    for i in range(4):
        lps = [lp.logprob for o in all4 for c in o.choices if c.index == i for lp in c.logprobs]
        means.append(sum(lps) / len(lps))
    winner = max(range(4), key=means.__getitem__)
    assert [c.index for o in best for c in o.choices] == [0]  # one event, buffered
    assert text_of(best) == text_of(all4, winner)


def test_stop_string_spanning_tokens_is_cut(gpt2_core):
    ref = submit(gpt2_core, "ref", greedy(24), PROMPT)
    run_until_idle(gpt2_core)
    pieces = [c.text for o in ref for c in o.choices]
    full = "".join(pieces)
    # A stop string made of the last character of one delta and the first of the next.
    k = next(i for i in range(1, len(pieces)) if pieces[i - 1] and pieces[i])
    at = len("".join(pieces[:k]))
    stop = full[at - 1 : at + 1]
    cut = full[: full.find(stop)]
    outs = submit(gpt2_core, "stop", greedy(24, stop=["nevermatches", stop]), PROMPT)
    run_until_idle(gpt2_core)
    assert text_of(outs) == cut
    assert finish_of(outs) == "stop"
    assert stop not in "".join(c.text for o in outs for c in o.choices)


def test_eos_ends_with_stop_and_max_tokens_with_length(gpt2_core):
    eos = gpt2_core.spec.eos_token_ids[0]
    params = SamplingParams(max_tokens=10, temperature=0.0, logit_bias={eos: 100.0})
    outs = submit(gpt2_core, "eos", params, PROMPT)
    length = submit(gpt2_core, "len", greedy(5), PROMPT)
    run_until_idle(gpt2_core)
    assert finish_of(outs) == "stop" and text_of(outs) == ""
    assert finish_of(length) == "length" and len(ids_of(length)) == 5


def test_penalties_and_logit_bias(gpt2_core):
    outs = submit(gpt2_core, "pen", greedy(30, frequency_penalty=100.0), PROMPT)
    biased = submit(gpt2_core, "bias", greedy(5, logit_bias={42: 100.0}), PROMPT)
    run_until_idle(gpt2_core)
    ids = ids_of(outs)
    assert len(ids) == 30 and len(set(ids)) == 30  # an additive penalty of 100 forbids repeats
    assert ids_of(biased) == [42] * 5


def test_logprobs_are_the_models_own(gpt2_core):
    outs = submit(gpt2_core, "lp", greedy(3, logprobs=2, echo=True), "import os")
    run_until_idle(gpt2_core)
    first = outs[0]
    assert first.prompt_text == "import os"
    ids = first.prompt_token_ids
    assert first.prompt_logprobs[0] is None and len(first.prompt_logprobs) == len(ids)
    gen = ids_of(outs)
    full = torch.tensor([ids + gen])
    with torch.no_grad():
        lp = torch.log_softmax(gpt2_core.runner.model(full).logits[0].float(), dim=-1)
    for t in range(1, len(ids)):
        assert first.prompt_logprobs[t].logprob == pytest.approx(lp[t - 1, ids[t]].item(), abs=1e-4)
    entries = [e for o in outs for c in o.choices for e in (c.logprobs or [])]
    assert len(entries) == 3
    for j, e in enumerate(entries):
        pos = len(ids) - 1 + j
        assert e.logprob == pytest.approx(lp[pos, gen[j]].item(), abs=1e-4)
        assert len(e.top) <= 2 and max(e.top.values()) == pytest.approx(lp[pos].max().item(), abs=1e-4)


def test_fim_prompt_and_truncation(gpt2_core):
    tok = gpt2_core.tokenizer
    outs = submit(gpt2_core, "fim", greedy(4), "def f(x):\n    return ", suffix="\n\nprint(f(2))\n")
    long = submit(gpt2_core, "long", greedy(500), "x = 1\n" * 400)
    run_until_idle(gpt2_core)
    vocab = tok.get_vocab()
    assert outs[0].prompt_token_ids[0] == vocab["<fim_prefix>"]
    assert vocab["<fim_middle>"] in outs[0].prompt_token_ids
    ctx = gpt2_core.spec.context_length
    n_prompt = len(long[0].prompt_token_ids)
    assert n_prompt < ctx and long[-1].num_generated_tokens == ctx - n_prompt  # clamped, not rejected
    assert long[0].prompt_text.endswith("x = 1\n")  # the end of the prompt is kept


def test_bad_token_ids_are_a_400_not_a_crash(gpt2_core):
    outs: list = []
    gpt2_core.submit(GenerationRequest("bad", greedy(3), prompt_token_ids=[1, 10**6]), outs.append)
    run_until_idle(gpt2_core)
    assert outs[0].finished and outs[0].error.status == 400 and outs[0].error.param == "prompt"


def test_cancelled_requests_leave_within_one_step(gpt2_core):
    outs = [submit(gpt2_core, f"c{i}", greedy(50), PROMPT + str(i)) for i in range(16)]
    while not all(o for o in outs):
        gpt2_core.step()
    before = gpt2_core.metrics()
    for i in range(16):
        gpt2_core.abort(f"c{i}")
    gpt2_core.step()
    m = gpt2_core.metrics()
    assert m["running"] == 0 and m["running_requests"] == 0
    assert m["requests_cancelled_total"] - before["requests_cancelled_total"] == 16
    assert m["tokens_generated_after_cancel_total"] == before["tokens_generated_after_cancel_total"]
    assert not gpt2_core.step()  # nothing left to do


def test_a_failing_step_errors_its_requests_and_the_loop_goes_on(tiny_model_dir):
    core = make_core(tiny_model_dir, prefix_cache_mb=0)
    ok_before = submit(core, "ok", greedy(3), PROMPT)
    run_until_idle(core)

    def broken(real, ids, *args, **kwargs):
        raise RuntimeError("simulated device failure")

    undo = wrap_forward(core, broken)  # every forward pass of the engine fails
    victims = [submit(core, f"v{i}", greedy(5), PROMPT) for i in range(3)]
    core.step()
    undo()
    for v in victims:
        assert len(v) == 1 and v[0].finished and "simulated device failure" in v[0].error.message
    assert core.consecutive_failures == 1
    after = submit(core, "after", greedy(3), PROMPT)
    run_until_idle(core)
    assert ids_of(after) == ids_of(ok_before) and core.consecutive_failures == 0


def test_queue_is_bounded(tiny_model_dir):
    core = make_core(tiny_model_dir, max_queue=2)
    submit(core, "a", greedy(1), "x")
    submit(core, "b", greedy(1), "x")
    with pytest.raises(QueueFullError):
        submit(core, "c", greedy(1), "x")


def test_detokenizer_never_splits_utf8(gpt2_core):
    tok = gpt2_core.tokenizer
    text = "naïve café → 日本語 ✓ done"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    detok = IncrementalDetokenizer(tok, [])
    deltas = [detok.add(t) for t in ids] + [detok.flush()]
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)
    assert len(ids) > len(text.encode().decode()) / 4  # multi-byte characters were split in tokens


def test_streamed_text_is_the_tokenizers_own_decode(gpt2_core):
    """The detokenizer calls the fast tokenizer's backend directly; what it streams must be what
    transformers' decode gives (special tokens skipped, no cleanup), token by token."""
    tok = gpt2_core.tokenizer
    text = "def f(x):\n    return x  ,  y . z  # café ✓\n" + tok.eos_token + "\nclass A :\n\tpass\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.eos_token_id in ids
    detok = IncrementalDetokenizer(tok, [])
    assert detok._backend_decode is not None  # the fast path is the one under test
    streamed = "".join([detok.add(t) for t in ids] + [detok.flush()])
    assert streamed == tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    assert tok.eos_token not in streamed and " ,  y . z" in streamed


def test_chunked_prefill_gives_the_same_tokens_and_keeps_decoding(gpt2_core, tiny_model_dir):
    long_prompt = PROMPT * 4  # ~100 tokens: seven chunks of 16
    solo = submit(gpt2_core, "solo-long", greedy(10), long_prompt)
    run_until_idle(gpt2_core)
    core = make_core(tiny_model_dir, max_step_tokens=16, prefix_cache_mb=0)
    running = submit(core, "running", greedy(40), "x = 1\n")
    core.step()
    long = submit(core, "long", greedy(10), long_prompt)
    while not long:
        core.step()
    tokens_meanwhile = len(ids_of(running))
    run_until_idle(core)
    assert ids_of(long) == ids_of(solo)
    n_prompt = len(long[0].prompt_token_ids)
    assert tokens_meanwhile >= n_prompt // 16  # the batch decoded while the long prompt was chunked


@pytest.mark.parametrize(
    ("arch", "kv_cache"),
    # GPT-Neo's own attention on the dynamic cache is not bit-invariant (docs/engine.md)
    [
        (a, k)
        for a in ("gpt2", "llama", "codegen", "gpt_neo")
        for k in ("slots", "dynamic")
        if (a, k) != ("gpt_neo", "dynamic")
    ],
)
def test_logits_are_bit_identical_alone_and_in_a_padded_batch(arch, kv_cache, tiny_model_factory):
    from codecomplete.engine.runner import PrefillRow

    # CPU default: the static slot cache; "dynamic": left-padded cache with row-wise attention.
    runner = make_core(tiny_model_factory(arch), kv_cache=kv_cache).runner
    g = torch.Generator().manual_seed(0)
    # c joins at step 4 and is the longest: the batch's attention width (or padding) grows.
    a, b, c = (torch.randint(1, 400, (n,), generator=g).tolist() for n in (20, 45, 90))
    # Two independent batches: slot 0 alone, slots 1.. mixed (the dynamic runner ignores `first`).
    solo, solo_logits, _ = runner.prefill([PrefillRow(a)], first=0)
    solo = runner.select(solo, [0])  # a lone sequence runs with its ghost row
    mixed, mixed_logits, _ = runner.prefill([PrefillRow(b), PrefillRow(a)], first=1)
    assert torch.equal(solo_logits[0], mixed_logits[1])
    for step in range(12):
        if step == 4:  # a third sequence joins: wider padding / attention width for the others
            mixed = runner.concatenate([mixed, runner.prefill([PrefillRow(c)], first=3)[0]])
        solo.set_next([7 + step])
        mixed.set_next([3, 7 + step] + [5] * (mixed.rows - 2))
        assert torch.equal(runner.decode(solo)[0], runner.decode(mixed)[1]), f"step {step}"

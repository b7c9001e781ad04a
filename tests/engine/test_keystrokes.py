"""Keystrokes: an editor cancels the previous request on every key, and the next prompt is that one
plus a few characters. The KV a cancelled request computed is kept for prefix reuse, so the next
request prefills only what is new, and writes what a fresh engine writes."""

from __future__ import annotations

from engine_helpers import greedy, ids_of, make_core, run_until_idle, submit

PROMPT = (
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n" * 3
)


def _tokens(core, text: str) -> list[int]:
    return core.tokenizer(text)["input_ids"]


def test_cancelled_chunked_prefill_is_reused_by_the_next_keystroke(tiny_model_dir):
    core = make_core(tiny_model_dir, max_step_tokens=16, prefix_min_tokens=8)
    fresh = make_core(tiny_model_dir, prefix_cache_mb=0)
    ids = _tokens(core, PROMPT)
    assert len(ids) > 48
    submit(core, "k1", greedy(8), prompt_token_ids=ids)
    for _ in range(3):  # three chunks of 16 tokens, then the editor cancels
        core.step()
    core.abort("k1")
    run_until_idle(core)
    nxt = ids + _tokens(core, "x = 1")
    outs = submit(core, "k2", greedy(8), prompt_token_ids=nxt)
    run_until_idle(core)
    assert core.metrics()["prefix_kv_kept_on_cancel_total"] == 1
    assert core.prefix_cache.tokens_reused >= 48
    ref = submit(fresh, "ref", greedy(8), prompt_token_ids=nxt)
    run_until_idle(fresh)
    assert ids_of(outs) == ids_of(ref)


def test_cancelled_generation_keeps_prompt_and_tokens(tiny_model_dir):
    core = make_core(tiny_model_dir, prefix_min_tokens=8)
    fresh = make_core(tiny_model_dir, prefix_cache_mb=0)
    ids = _tokens(core, PROMPT)
    first = submit(core, "k1", greedy(32), prompt_token_ids=ids)
    for _ in range(6):
        core.step()
    core.abort("k1")
    run_until_idle(core)
    written = ids_of(first)
    assert len(written) >= 4
    # The user typed what was suggested, and one more character.
    nxt = ids + written + _tokens(core, "#")
    before = core.prefix_cache.tokens_reused
    outs = submit(core, "k2", greedy(8), prompt_token_ids=nxt)
    run_until_idle(core)
    assert core.prefix_cache.tokens_reused - before >= len(ids) + len(written) - 1
    ref = submit(fresh, "ref", greedy(8), prompt_token_ids=nxt)
    run_until_idle(fresh)
    assert ids_of(outs) == ids_of(ref)


def test_a_keystroke_reuses_the_entry_without_copying_its_kv_again(tiny_model_dir):
    """A prompt that extends its cached prefix by fewer than prefix_min_tokens tokens is served from
    that entry and adds none (a new entry copies the whole KV; the next keystroke prefills a few
    tokens more from the old one at the same cost); one that extends it further adds its own."""
    core = make_core(tiny_model_dir, prefix_min_tokens=8)
    fresh = make_core(tiny_model_dir, prefix_cache_mb=0)
    ids = _tokens(core, PROMPT)
    submit(core, "base", greedy(2), prompt_token_ids=ids)
    run_until_idle(core)
    assert len(core.prefix_cache) == 1
    for i, typed in enumerate(["x", "x = 1", "x = 12"]):  # each a few tokens past the entry
        nxt = ids + _tokens(core, typed)
        outs = submit(core, f"k{i}", greedy(4), prompt_token_ids=nxt)
        run_until_idle(core)
        ref = submit(fresh, f"r{i}", greedy(4), prompt_token_ids=nxt)
        run_until_idle(fresh)
        assert ids_of(outs) == ids_of(ref)
        assert len(core.prefix_cache) == 1 and core.prefix_cache.hits == i + 1
    longer = ids + _tokens(core, "\nvalues = [fibonacci(i) for i in range(30)]\nprint(values)\n")
    assert len(longer) - len(ids) >= 8
    submit(core, "long", greedy(2), prompt_token_ids=longer)
    run_until_idle(core)
    assert list(core.prefix_cache.entries) == [tuple(longer)]  # the old entry was its prefix


def test_keystrokes_past_the_context_keep_one_window_and_reuse_it(tiny_model_dir):
    """A file longer than the context: the prompt's start is cut in steps (engine/inputs.py), so
    the keystrokes after the first share their window's start with the one before, reuse its KV,
    and still write what a fresh engine writes. Cutting exactly the excess moved the window by
    every token typed, and no keystroke reused anything."""
    core = make_core(tiny_model_dir, prefix_min_tokens=8)
    fresh = make_core(tiny_model_dir, prefix_cache_mb=0)
    ctx = core.spec.context_length
    ids = (_tokens(core, PROMPT) * 8)[: ctx + ctx // 2]
    typed = _tokens(core, "values = [fibonacci(i) for i in range(30)]")
    assert len(typed) >= 6
    reused = []
    for i in range(1, 6):
        nxt = ids + typed[:i]
        before = core.prefix_cache.tokens_reused
        outs = submit(core, f"k{i}", greedy(4), prompt_token_ids=nxt)
        run_until_idle(core)
        reused.append(core.prefix_cache.tokens_reused - before)
        ref = submit(fresh, f"r{i}", greedy(4), prompt_token_ids=nxt)
        run_until_idle(fresh)
        assert ids_of(outs) == ids_of(ref)
        assert outs[0].prompt_token_ids == ref[0].prompt_token_ids
        kept = len(outs[0].prompt_token_ids)
        assert ctx // 2 < kept <= ctx - 4  # truncated, with room for the 4 tokens
    # The 16-token step (ctx // 16) leaves room for these few typed tokens: one window for all.
    assert all(n >= ctx // 2 for n in reused[1:]), reused

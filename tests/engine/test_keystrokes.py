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

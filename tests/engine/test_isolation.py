"""Requests are independent of each other: a request whose sampling cannot work fails alone: the rest of its batch finishes with the same
text as alone and the engine stays healthy (a poisoned row used to fail the whole step, and three
such steps turned /health to 503 until a restart)."""

from __future__ import annotations

from engine_helpers import greedy, ids_of, run_until_idle, submit, text_of

from codecomplete.engine.async_engine import FAILING_STEPS
from codecomplete.engine.types import SamplingParams

PROMPT = "def fibonacci(n):\n    if n < 2:\n        return n\n    return"


def poison(**kw) -> SamplingParams:
    # NaN passes no API validator (the body parser rejects it), so only the engine can see it: it
    # stands for any row whose distribution cannot be sampled.
    return SamplingParams(max_tokens=8, temperature=float("nan"), ignore_eos=True, **kw)


def test_poison_rows_fail_alone_inside_a_busy_batch(gpt2_core):
    solos = []
    for i in range(4):
        solos.append(submit(gpt2_core, f"solo{i}", greedy(16), PROMPT + " " * i))
        run_until_idle(gpt2_core)
    normal = [submit(gpt2_core, f"n{i}", greedy(16), PROMPT + " " * i) for i in range(4)]
    gpt2_core.step()  # the normal ones are running when the poison arrives
    bad = [submit(gpt2_core, f"p{i}", poison(), "x = ") for i in range(FAILING_STEPS + 2)]
    run_until_idle(gpt2_core)
    for outs in bad:
        assert outs[-1].finished and outs[-1].error is not None
        assert "this request" in outs[-1].error.message
    for outs, solo in zip(normal, solos, strict=True):
        assert outs[-1].error is None and outs[-1].finished
        assert ids_of(outs) == ids_of(solo) and text_of(outs) == text_of(solo)
    assert gpt2_core.consecutive_failures == 0
    assert gpt2_core.metrics()["requests_failed_alone_total"] >= len(bad)
    assert gpt2_core.metrics()["step_failures_total"] == 0


def test_tiny_temperatures_are_greedy(gpt2_core):
    ref = submit(gpt2_core, "ref", greedy(12), PROMPT)
    run_until_idle(gpt2_core)
    for t in (1e-300, 5e-324, 1e-40, 1e-6):
        outs = submit(
            gpt2_core, f"t{t}", SamplingParams(max_tokens=12, temperature=t, ignore_eos=True), PROMPT
        )
        run_until_idle(gpt2_core)
        assert outs[-1].error is None
        assert ids_of(outs) == ids_of(ref), t


def test_deadline_ends_at_the_last_line_boundary(gpt2_core):
    from codecomplete.engine.stopping import last_line_boundary

    assert last_line_boundary("a = 1\nb = 2\nc =") == len("a = 1\nb = 2")
    assert last_line_boundary("return x") == len("return x")
    free = submit(gpt2_core, "free", greedy(40), PROMPT)
    run_until_idle(gpt2_core)
    late = submit(gpt2_core, "late", greedy(40, deadline_s=0.0), PROMPT)
    run_until_idle(gpt2_core)
    (reason,) = [c.finish_reason for o in late for c in o.choices if c.finish_reason]
    assert reason == "length"
    text = text_of(late)
    assert len(ids_of(late)) < len(ids_of(free))  # it stopped early
    assert text_of(free).startswith(text)  # and what it wrote is a prefix cut at a line end
    assert "\n" not in text or text_of(free)[len(text)] == "\n"
    assert gpt2_core.metrics()["requests_deadline_total"] == 1


MARKER = 7


def _poison(core) -> None:
    """From now on a forward pass whose input holds MARKER raises (a request that crashes the
    model: a bad token, a kernel bug on some input), as a whole batched step would: the model's
    forward and the slot runner's own decode and prompt steps alike (engine_helpers.wrap_forward)."""
    from engine_helpers import wrap_forward

    def poisoned(real, ids, *args, **kw):
        if ids is not None and bool((ids == MARKER).any()):
            raise RuntimeError("poisoned input")
        return real(*args, **kw)

    wrap_forward(core, poisoned)


def test_a_forward_that_fails_is_pinned_on_its_rows(tiny_model_dir):
    """A request whose forward pass raises, mixed into a running batch (in decode and in a
    batched prefill), fails alone; the others finish with their solo text; health is kept."""
    from engine_helpers import make_core

    core = make_core(tiny_model_dir, prefix_cache_mb=0)
    _poison(core)
    marker = MARKER
    prompts = [PROMPT + " " * i for i in range(5)]
    solos = []
    for i, prompt in enumerate(prompts):
        solos.append(submit(core, f"solo{i}", greedy(12), prompt))
        run_until_idle(core)
    normal = [submit(core, f"n{i}", greedy(12), p) for i, p in enumerate(prompts[:4])]
    core.step()  # they are running
    # Its first token is forced to MARKER: the next batched decode step raises.
    in_decode = submit(core, "bad-decode", greedy(8, logit_bias={marker: 100.0}), "x = ")
    core.step()
    # Its prompt holds MARKER: the batched prefill it shares with "late" raises.
    in_prefill = submit(core, "bad-prefill", greedy(8), prompt_token_ids=[11, marker, 12, 13])
    late = submit(core, "late", greedy(12), prompts[4])
    run_until_idle(core)
    for outs in (in_decode, in_prefill):
        assert outs[-1].finished and outs[-1].error is not None
        assert "this request" in outs[-1].error.message and "poisoned" in outs[-1].error.message
    for outs, solo in zip([*normal, late], solos, strict=True):
        assert outs[-1].error is None and outs[-1].finished
        assert ids_of(outs) == ids_of(solo) and text_of(outs) == text_of(solo)
    m = core.metrics()
    assert m["requests_failed_alone_total"] == 2
    assert m["step_failures_total"] == 0 and core.consecutive_failures == 0


def test_a_model_that_fails_for_everyone_still_counts_against_health(tiny_model_dir):
    from engine_helpers import make_core

    core = make_core(tiny_model_dir, prefix_cache_mb=0)

    def broken(*args, **kw):
        raise RuntimeError("the model is broken")

    from engine_helpers import wrap_forward

    outs = [submit(core, f"r{i}", greedy(4), PROMPT + " " * i) for i in range(3)]
    wrap_forward(core, lambda real, ids, *a, **kw: broken())
    run_until_idle(core)
    for o in outs:
        assert o[-1].error is not None and "broken" in o[-1].error.message
    assert core.metrics()["step_failures_total"] >= 1 and core.consecutive_failures >= 1
    assert core.metrics()["requests_failed_alone_total"] == 0


def test_a_batched_prefill_that_fails_on_its_first_tokens_leaves_nothing_behind(tiny_model_dir):
    """The forward of a batched prefill succeeds but applying the first tokens raises for one
    request: each is prefilled again on its own, and the attempt's sequences must not stay with
    the requests (they used to, unfinished: the healthy requests never ended and the engine
    stepped forever)."""
    from engine_helpers import make_core

    core = make_core(tiny_model_dir, prefix_cache_mb=0)
    prompts = [PROMPT + " " * i for i in range(3)]
    solos = []
    for i, prompt in enumerate(prompts):
        solos.append(submit(core, f"solo{i}", greedy(12, n=2 if i == 1 else 1), prompt))
        run_until_idle(core)
    real = core._update

    def update(batch, logits):
        if any(s.request.request_id == "bad" for s in batch.seqs):
            raise ValueError("cannot apply this request's first token")
        return real(batch, logits)

    core._update = update
    normal = [submit(core, f"n{i}", greedy(12, n=2 if i == 1 else 1), p) for i, p in enumerate(prompts)]
    bad = submit(core, "bad", greedy(8), "x = ")
    run_until_idle(core, max_steps=200)
    assert bad[-1].finished and bad[-1].error is not None and "this request" in bad[-1].error.message
    for outs, solo in zip(normal, solos, strict=True):
        assert outs[-1].error is None and outs[-1].finished
        assert ids_of(outs) == ids_of(solo) and text_of(outs) == text_of(solo)
    assert core.metrics()["running_requests"] == 0
    assert core.metrics()["requests_failed_alone_total"] == 1

"""Requests are independent of each other: a request whose sampling cannot work fails alone: the rest of its batch finishes with the same
text as alone and the engine stays healthy (a poisoned row used to fail the whole step, and three
such steps turned /health to 503 until a restart)."""

from __future__ import annotations

from engine_helpers import greedy, ids_of, run_until_idle, submit, text_of

from codecomplete.engine.core import UNHEALTHY_AFTER
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
    bad = [submit(gpt2_core, f"p{i}", poison(), "x = ") for i in range(UNHEALTHY_AFTER + 2)]
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

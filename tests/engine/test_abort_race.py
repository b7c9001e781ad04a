"""An abort that arrives while the engine prepares the request's prompt (out of the inbox, not yet
live) is not lost: the request ends cancelled instead of running to max_tokens. A superseded
keystroke's abort used to miss this window, leaving two requests of one editor running."""

from __future__ import annotations

from engine_helpers import greedy, ids_of, run_until_idle, submit


def test_abort_during_admission_cancels_the_request(gpt2_core):
    admit = gpt2_core._admit

    def admit_while_the_client_aborts(request, sink):
        state = admit(request, sink)
        gpt2_core.abort(request.request_id)  # from another thread, in the real server
        return state

    gpt2_core._admit = admit_while_the_client_aborts
    try:
        outs = submit(gpt2_core, "typed", greedy(50), "def f(x):\n    return")
        run_until_idle(gpt2_core)
    finally:
        gpt2_core._admit = admit
    assert outs[-1].finished and outs[-1].error is not None and outs[-1].error.code == "cancelled"
    assert len(ids_of(outs)) < 50
    assert gpt2_core.metrics()["requests_cancelled_total"] == 1
    other = submit(gpt2_core, "next", greedy(5), "x = 1")  # the engine goes on as before
    run_until_idle(gpt2_core)
    assert outs is not other and len(ids_of(other)) == 5

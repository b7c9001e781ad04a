"""The hostile-input driver (hostile.py) catches what it is for: a 5xx, a broken error body, a
server whose /health fails after a request. Fast: a scripted engine behind the real HTTP stack."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st

from codecomplete.api import build_app

from .conftest import ServerThread, free_port_number, settings
from .fake_engine import FakeEngine, default_script
from .hostile import body_strategy, fire, raw_body_strategy


def serve(engine: FakeEngine) -> ServerThread:
    return ServerThread(build_app(settings(), engine), free_port_number())


BODIES = body_strategy(
    ["temperature", "n", "prompt"],
    base={"prompt": "x", "max_tokens": 1},
    plausible={"temperature": st.floats(0, 2), "n": st.integers(1, 3), "prompt": st.text(max_size=5)},
)


def test_a_clean_route_passes_and_reaches_both_sides():
    with serve(FakeEngine()) as s:
        seen = fire(s.base, "/v1/completions", BODIES, n=40)
        seen += fire(s.base, "/v1/completions", raw_body_strategy(), n=20)
    assert seen[200] and seen[400]


def test_a_500_is_caught():
    async def crashes_on_n_above_1(request):
        if request.params.n > 1:  # a bug only some valid values reach
            raise RuntimeError("boom")
        async for out in default_script(request):
            yield out

    with serve(FakeEngine(crashes_on_n_above_1)) as s, pytest.raises(AssertionError, match="-> 500"):
        fire(s.base, "/v1/completions", BODIES, n=60)


def test_a_server_that_goes_unhealthy_is_caught():
    engine = FakeEngine()

    async def poisons(request):
        if request.params.n > 1:
            engine.healthy = False  # the way three failed steps used to take the engine down
        async for out in default_script(request):
            yield out

    engine.script = poisons
    with serve(engine) as s, pytest.raises(AssertionError, match="/health -> 503"):
        fire(s.base, "/v1/completions", BODIES, n=60)

"""A client that goes away has its generation aborted at once (real uvicorn, scripted engine)."""

from __future__ import annotations

import time

import httpx
import pytest

from codecomplete.api import build_app

from .conftest import ServerThread, free_port_number, settings
from .fake_engine import FakeEngine


@pytest.fixture
def slow_server():
    # 0.2 s per token: a 100-token answer takes 20 s, far longer than any of these tests waits.
    engine = FakeEngine(token_delay=0.2)
    with ServerThread(build_app(settings(), engine), free_port_number()) as srv:
        yield srv, engine


def _wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_stream_closed_after_first_token_aborts(slow_server):
    srv, engine = slow_server
    body = {"prompt": "a", "max_tokens": 100, "stream": True}
    with httpx.Client(timeout=10) as c, c.stream("POST", srv.base + "/v1/completions", json=body) as r:
        assert next(r.iter_lines()).startswith("data: {")
    assert _wait_for(lambda: len(engine.cancelled) == 1 and not engine.running)
    text = httpx.get(srv.base + "/metrics").text
    assert "codecomplete_requests_cancelled_total 1.0" in text
    assert "codecomplete_running_batch_size 0.0" in text


def test_non_streaming_client_timeout_aborts(slow_server):
    srv, engine = slow_server
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(srv.base + "/v1/completions", json={"prompt": "a", "max_tokens": 100}, timeout=0.5)
    assert _wait_for(lambda: len(engine.cancelled) == 1 and not engine.running)
    assert "codecomplete_requests_cancelled_total 1.0" in httpx.get(srv.base + "/metrics").text


def test_all_prompts_of_a_request_are_aborted(slow_server):
    srv, engine = slow_server
    body = {"prompt": ["a", "b", "c"], "max_tokens": 100, "stream": True}
    with httpx.Client(timeout=10) as c, c.stream("POST", srv.base + "/v1/completions", json=body) as r:
        next(r.iter_lines())
    assert _wait_for(lambda: len(engine.cancelled) == 3 and not engine.running)


def test_the_server_keeps_serving_after_disconnects(slow_server):
    srv, engine = slow_server
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(srv.base + "/v1/completions", json={"prompt": "a", "max_tokens": 100}, timeout=0.3)
    r = httpx.post(srv.base + "/v1/completions", json={"prompt": "a", "max_tokens": 2}, timeout=10)
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length"

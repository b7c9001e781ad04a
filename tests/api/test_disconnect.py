"""A client that goes away has its generation aborted at once (real uvicorn, scripted engine)."""

from __future__ import annotations

import asyncio
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
    assert 'codecomplete_completions_total{outcome="cancelled"} 1.0' in text
    assert "codecomplete_batch_sequences 0.0" in text


def test_non_streaming_client_timeout_aborts(slow_server):
    srv, engine = slow_server
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(srv.base + "/v1/completions", json={"prompt": "a", "max_tokens": 100}, timeout=0.5)
    assert _wait_for(lambda: len(engine.cancelled) == 1 and not engine.running)
    assert 'codecomplete_completions_total{outcome="cancelled"} 1.0' in httpx.get(srv.base + "/metrics").text


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


class _BrokenEngine(FakeEngine):
    async def start(self) -> None:
        await asyncio.sleep(0.2)
        raise OSError("no model at /nowhere")


def test_background_start_answers_503_until_the_model_is_loaded():
    engine = FakeEngine(start_delay=1.5)
    app = build_app(settings(), engine, start_in_background=True)
    with ServerThread(app, free_port_number()) as srv:
        r = httpx.get(srv.base + "/health")
        assert r.status_code == 503 and r.json()["status"] == "unavailable"
        r = httpx.post(srv.base + "/v1/completions", json={"prompt": "a"})
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["error"]["code"] == "engine_unavailable"
        assert httpx.get(srv.base + "/v1/models").status_code == 503
        assert _wait_for(lambda: httpx.get(srv.base + "/health").status_code == 200, timeout=10)
        assert httpx.post(srv.base + "/v1/completions", json={"prompt": "a"}).status_code == 200


def test_a_model_that_fails_to_load_is_reported_to_the_caller():
    failures = []
    app = build_app(settings(), _BrokenEngine(), start_in_background=True, on_start_failure=failures.append)
    with ServerThread(app, free_port_number()) as srv:
        assert _wait_for(lambda: bool(failures))
        assert isinstance(failures[0], OSError)
        assert httpx.get(srv.base + "/health").status_code == 503

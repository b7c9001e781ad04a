"""Every route of PROTOCOLS.md answers, with the shapes its client reads."""

from __future__ import annotations

import time

import pytest

from codecomplete.api.middleware import normalize_path

from .conftest import make_client
from .fake_engine import FakeEngine
from .sse_util import assert_openai_error

COMPLETION_PATHS = [
    "/v1/completions",
    "/completions",
    "/v1/engines/codegen/completions",
    "/v1/engines/copilot-codex/completions",
    "/engines/codegen/completions",
    "//v1/engines/copilot-codex/completions",  # Copilot with a trailing slash in overrideProxyUrl
    "/v1//engines//codegen//completions",
    "/v1/completions/",
]


@pytest.mark.parametrize("path", COMPLETION_PATHS)
def test_completion_routes(client, path):
    # A full URL: httpx would read a relative "//v1/..." as a host name.
    r = client.post("http://testserver" + path, json={"prompt": "a", "max_tokens": 2})
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "text_completion"


def test_normalize_path():
    assert normalize_path("//v1//engines/x/completions/") == "/v1/engines/x/completions"
    assert normalize_path("/") == "/"
    assert normalize_path("//") == "/"


def test_models(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["fake-model", "codegen"]
    card = body["data"][0]
    assert card["object"] == "model" and card["owned_by"] == "codecomplete" and card["created"] > 0
    assert card["fill_in_the_middle"] is True and card["fim_template"] == "codecomplete"
    assert client.get("/v1/models/codegen").json()["id"] == "codegen"
    assert client.get("http://testserver//models/codegen").json()["id"] == "codegen"
    err = assert_openai_error(client.get("/v1/models/gpt-4"), 404, param="model")
    assert err["code"] == "model_not_found"


def test_models_say_when_suffix_is_ignored():
    with make_client(FakeEngine(fim_template=None)) as c:
        card = c.get("/v1/models").json()["data"][0]
        assert card["fill_in_the_middle"] is False and card["fim_template"] is None


def test_engines_for_openai_0x(client):
    body = client.get("/v1/engines").json()
    assert body["object"] == "list"
    assert body["data"][0] == {
        "id": "fake-model",
        "object": "engine",
        "owner": "codecomplete",
        "ready": True,
        "created": body["data"][0]["created"],
    }
    assert client.get("/v1/engines/codegen").json()["id"] == "codegen"
    assert client.get("/engines").status_code == 200


def test_copilot_token(client):
    r = client.get("/copilot_internal/v2/token")
    body = r.json()
    assert {"token", "expires_at", "refresh_in", "endpoints"} <= set(body)
    assert body["token"] and body["expires_at"] > time.time() and body["refresh_in"] > 0
    assert r.headers["x-github-request-id"]  # tests/api/test_copilot.py has the rest


def test_health(client, fake):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    fake.healthy = False
    r = client.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"


def test_lifespan_starts_and_stops_the_engine():
    engine = FakeEngine()
    with make_client(engine) as c:
        assert engine.started and not engine.stopped
        c.get("/health")
    assert engine.stopped


def test_autocomplete_ivolution(client, fake):
    r = client.post(
        "/autocomplete", content=b'{"text": "import os\\n"}', headers={"content-type": "text/plain"}
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    result = r.json()["result"]
    assert len(result) == 5 and all(isinstance(t, str) and t for t in result)
    p = fake.requests[-1].params
    assert (p.n, p.max_tokens, p.top_p, p.temperature) == (5, 8, 0.85, 1.0)
    assert fake.requests[-1].prompt == "import os\n"
    r = client.post("/autocomplete", json={"text": "x", "n": 2, "max_tokens": 3})
    assert r.json()["result"] == ["t00 t10 t20", "t01 t11 t21"]
    assert client.post("/autocomplete", json={"text": ""}).json() == {"result": []}


def test_metrics_text(client):
    client.post("/v1/completions", json={"prompt": "a", "max_tokens": 3})
    client.post(
        "http://testserver//v1/engines/x/completions", json={"prompt": "a", "max_tokens": 3, "stream": True}
    )
    client.post("/v1/completions", json={"prompt": "a", "n": 0})
    client.get("/does-not-exist")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'codecomplete_http_requests_total{method="POST",route="/v1/completions",status="200"} 1.0' in text
    assert 'route="/v1/engines/{engine:path}/completions",status="200"} 1.0' in text
    assert 'codecomplete_http_requests_total{method="POST",route="/v1/completions",status="400"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "codecomplete_generated_tokens_total 6.0" in text
    assert "codecomplete_time_to_first_token_seconds_count 2.0" in text
    assert "codecomplete_inter_token_latency_seconds_count 4.0" in text
    assert "codecomplete_requests_waiting 0.0" in text
    assert "codecomplete_requests_running 0.0" in text
    assert "codecomplete_batch_sequences 0.0" in text
    assert 'codecomplete_completions_total{outcome="ok"} 2.0' in text


def test_each_app_has_its_own_registry():
    with make_client() as a, make_client() as b:
        a.post("/v1/completions", json={"prompt": "a"})
        assert "codecomplete_time_to_first_token_seconds_count 1.0" in a.get("/metrics").text
        assert "codecomplete_time_to_first_token_seconds_count 0.0" in b.get("/metrics").text


def test_latency_histograms_count_engine_steps_not_choices(client):
    client.post("/v1/completions", json={"prompt": "a", "max_tokens": 4, "n": 3})
    text = client.get("/metrics").text
    assert "codecomplete_time_to_first_token_seconds_count 1.0" in text
    assert "codecomplete_inter_token_latency_seconds_count 3.0" in text  # 4 steps: 3 gaps
    assert "codecomplete_generated_tokens_total 12.0" in text

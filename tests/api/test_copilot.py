"""Copilot's control plane (api/copilot): what the language server needs besides completions.

The real client against these routes is tests/api/test_copilot_client.py; here each route's shape,
the telemetry sink's counting, and its answers to bad bodies (Application Insights' error shape).
"""

from __future__ import annotations

import gzip
import json
import time
import zlib

import pytest

from .conftest import make_client


def envelope(name: str, language: str | None = "python") -> dict:
    """One Application Insights event as the language server sends it."""
    props = {"languageId": language} if language is not None else {}
    return {
        "time": "2026-12-01T23:14:03.197Z",
        "iKey": "7d7048df-6dd0-4048-bb23-b716c1461f8f",
        "name": "Microsoft.ApplicationInsights.7d7048df6dd04048bb23b716c1461f8f.Event",
        "tags": {"ai.session.id": "s"},
        "data": {"baseType": "EventData", "baseData": {"ver": 2, "name": name, "properties": props}},
    }


@pytest.fixture
def client():
    with make_client() as c:
        yield c


def test_token_points_every_endpoint_back_here(client):
    r = client.get("/copilot_internal/v2/token", headers={"Authorization": "token anything"})
    assert r.status_code == 200 and r.headers["x-github-request-id"]
    body = r.json()
    assert body["expires_at"] > time.time() and 0 < body["refresh_in"] < body["expires_at"] - time.time()
    assert body["endpoints"] == {
        "api": "http://testserver",
        "proxy": "http://testserver",
        "telemetry": "http://testserver",
        "origin-tracker": "http://testserver",
    }
    assert "=" in body["token"] and body["telemetry"] == "enabled"


def test_user_and_experiment_config(client):
    user = client.get("/copilot_internal/user")
    assert user.status_code == 200 and user.headers["x-github-request-id"] and user.json()["login"]
    config = client.get("/telemetry").json()
    # The client does `Configs.find(c => c.Id === "vscode")` and reads its Parameters.
    assert [c for c in config["Configs"] if c["Id"] == "vscode"] == [{"Id": "vscode", "Parameters": {}}]
    assert config["AssignmentContext"] == ""


def events(client) -> dict[tuple[str, str], float]:
    out = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("codecomplete_copilot_events_total{"):
            labels, value = line[len("codecomplete_copilot_events_total{") :].split("} ")
            kv = dict(p.split("=") for p in labels.split(","))
            out[(kv["event"].strip('"'), kv["language"].strip('"'))] = float(value)
    return out


def rate(client, language: str) -> float | None:
    prefix = f'codecomplete_copilot_acceptance_rate{{language="{language}"}} '
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


def test_telemetry_becomes_acceptance_metrics(client):
    batch = [
        envelope("copilot/ghostText.shown"),
        envelope("copilot/ghostText.shown"),
        envelope("copilot/ghostText.accepted"),
        envelope("copilot/ghostText.shown", "typescript"),
        envelope("copilot/ghostText.rejected", "typescript"),
        envelope("copilot/ghostText.issued"),  # other telemetry: read, not counted
        envelope("copilot/ghostText.shown", "Bad Language!"),
    ]
    r = client.post("/telemetry", json=batch)
    assert r.status_code == 200 and r.json() == {"itemsReceived": 7, "itemsAccepted": 7, "errors": []}
    assert events(client) == {
        ("shown", "python"): 2,
        ("accepted", "python"): 1,
        ("shown", "typescript"): 1,
        ("rejected", "typescript"): 1,
        ("shown", "unknown"): 1,
    }
    assert rate(client, "python") == 0.5 and rate(client, "typescript") == 0.0
    assert rate(client, "all") == pytest.approx(1 / 4)


def test_telemetry_gzip_and_one_envelope_per_line(client):
    lines = "\n".join(json.dumps(envelope("copilot/ghostText.shown", "go")) for _ in range(3)).encode()
    r = client.post("/telemetry", content=gzip.compress(lines), headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.json()["itemsAccepted"] == 3
    one = zlib.compress(json.dumps(envelope("copilot/ghostText.accepted", "go")).encode())
    assert client.post("/telemetry", content=one, headers={"Content-Encoding": "deflate"}).status_code == 200
    assert events(client) == {("shown", "go"): 3, ("accepted", "go"): 1}


@pytest.mark.parametrize(
    "content, headers, status",
    [
        (b"", {}, 400),
        (b"not json", {}, 400),
        (b"\xff\xfe", {}, 400),
        (b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"}, 400),
        (b"{}", {"Content-Encoding": "br"}, 400),
        (json.dumps([{}] * 1001).encode(), {}, 400),
        (
            gzip.compress(b"[" + b"0," * 2_000_000 + b"0]"),
            {"Content-Encoding": "gzip"},
            400,
        ),  # inflates past the limit
        (b"[" + b" " * (3 * 1024 * 1024) + b"]", {}, 413),
    ],
)
def test_bad_telemetry_is_4xx_in_application_insights_shape(client, content, headers, status):
    r = client.post("/telemetry", content=content, headers=headers)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["itemsAccepted"] == 0 and body["errors"][0]["statusCode"] == status
    assert body["errors"][0]["message"]
    assert client.get("/health").status_code == 200


def test_odd_but_valid_envelopes_are_accepted_and_ignored(client):
    batch = [1, "x", None, {"data": 5}, {"data": {"baseData": {"name": 7}}}, {"name": "ghostText.shown"}]
    r = client.post("/telemetry", json=batch)
    assert r.status_code == 200 and r.json()["itemsAccepted"] == 6
    assert events(client) == {("shown", "unknown"): 1}


def test_with_an_api_key_copilot_signs_in_with_it_and_sends_it_back():
    # GH_COPILOT_TOKEN=<key>: the client sends it to the token route and gets it back as its token.
    with make_client(api_key="sekret-key") as c:
        for path in ("/copilot_internal/v2/token", "/copilot_internal/user"):
            for auth in ({}, {"Authorization": "token wrong"}):
                r = c.get(path, headers=auth)
                assert r.status_code == 401 and r.headers["x-github-request-id"]
                assert set(r.json()) == {"message", "documentation_url"}
        token = c.get("/copilot_internal/v2/token", headers={"Authorization": "token sekret-key"}).json()[
            "token"
        ]
        assert token == "sekret-key"
        r = c.post(
            "/v1/engines/x/completions", json={"prompt": "a"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 200
        assert c.get("/telemetry").status_code == 200  # the experiment config carries no credentials

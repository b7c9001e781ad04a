"""No client input is a 5xx: random values of random types in every field (seeded, so repeatable)."""

from __future__ import annotations

import json
import random

import pytest

from .conftest import make_client

FIELDS = [
    "model", "prompt", "suffix", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options",
    "logprobs", "echo", "stop", "presence_penalty", "frequency_penalty", "best_of", "logit_bias", "seed",
    "user", "extra", "top_k", "ignore_eos", "text",
]  # fmt: skip


def _value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(12 if depth < 2 else 8)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, 1, -1, 2, 5, 16, 10**6, -(10**9), 2**63, 2**64 + 1, 10**30])
    if kind == 3:
        return rng.choice([0.0, -0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -3.7, 1e308, -1e-308])
    if kind == 4:
        return rng.choice(
            ["", "a", "\n", "def f():\n    ", "\x00", "\ud7ff", "é" * 50, "1", "true", " " * 300]
        )
    if kind == 5:
        return "x" * rng.randrange(0, 2000)
    if kind == 6:
        return [rng.randrange(-5, 2000) for _ in range(rng.randrange(0, 6))]
    if kind == 7:
        return [rng.choice(["a", "\n", "", "stop"]) for _ in range(rng.randrange(0, 30))]
    if kind == 8:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    if kind == 9:
        return {str(rng.randrange(-3, 3000)): _value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}
    if kind == 10:
        return {"include_usage": _value(rng, depth + 1), "next_indent": _value(rng, depth + 1),
                "trim_by_indentation": _value(rng, depth + 1)}  # fmt: skip
    return [[rng.randrange(0, 1200) for _ in range(rng.randrange(0, 4))] for _ in range(rng.randrange(0, 3))]


def _body(rng: random.Random) -> dict:
    body = {"prompt": "x", "text": "x", "max_tokens": 2}
    for name in rng.sample(FIELDS, rng.randrange(1, 6)):
        body[name] = _value(rng)
    return body


@pytest.mark.parametrize("route", ["/v1/completions", "/v1/engines/codegen/completions", "/autocomplete"])
def test_random_bodies_never_5xx(route):
    rng = random.Random(route)
    statuses = set()
    with make_client() as c:
        for _ in range(150):
            body = _body(rng)
            r = c.post(route, content=json.dumps(body), headers={"content-type": "application/json"})
            assert r.status_code < 500, (body, r.status_code, r.text[:300])
            statuses.add(r.status_code)
            if r.status_code >= 400:
                assert set(r.json()["error"]) == {"message", "type", "param", "code"}
            elif r.headers["content-type"].startswith("application/json"):
                assert "choices" in r.json() or "result" in r.json()
    assert 200 in statuses and 400 in statuses  # the generator reaches both sides


def valid_body(rng: random.Random, vocab: int = 512) -> dict:
    """A body that should be accepted, with edge values in every field (for the real engine)."""
    ids = lambda: [rng.randrange(vocab) for _ in range(rng.randrange(1, 12))]  # noqa: E731
    prompt = rng.choice(
        ["", "def f(x):\n    ", "é€😀\n", "x" * 3000, ids(), [ids(), ids()], ["import os\n", "class A:\n"]]
    )
    body: dict = {"prompt": prompt, "max_tokens": rng.choice([1, 2, 5, 8])}
    options = {
        "suffix": lambda: rng.choice(["", "\n    return x\n", "y" * 2000]),
        "temperature": lambda: rng.choice([0, 1e-6, 0.2, 1, 2]),
        "top_p": lambda: rng.choice([0, 1e-9, 0.5, 1]),
        "top_k": lambda: rng.choice([0, 1, 5, 10**6]),
        "n": lambda: rng.choice([1, 2, 5]),
        "logprobs": lambda: rng.choice([0, 1, 5]),
        "echo": lambda: True,
        "stop": lambda: rng.choice(["\n", ["a", "b" * 200], [], ["é", "😀"]]),
        "presence_penalty": lambda: rng.choice([-2, 0.5, 2]),
        "frequency_penalty": lambda: rng.choice([-2, 0.5, 2]),
        "logit_bias": lambda: {str(rng.randrange(vocab)): rng.choice([-100, 100, 3.5]) for _ in range(3)},
        "seed": lambda: rng.choice([0, -1, 2**63 - 1, -(2**63)]),
        "stream": lambda: True,
        "stream_options": lambda: {"include_usage": True},
        "ignore_eos": lambda: True,
        "extra": lambda: {"trim_by_indentation": True, "next_indent": rng.choice([0, 4, 80])},
    }
    for name in rng.sample(sorted(options), rng.randrange(1, 7)):
        body[name] = options[name]()
    if body.get("echo") and rng.random() < 0.3:
        body["max_tokens"] = 0
    if body.get("n", 1) > 1 and rng.random() < 0.3 and not body.get("stream"):
        body["best_of"] = body["n"] + 1
    return body


def test_valid_bodies_are_accepted():
    rng = random.Random(0)
    with make_client() as c:
        for _ in range(150):
            body = valid_body(rng)
            r = c.post("/v1/completions", json=body)
            assert r.status_code == 200, (body, r.text[:300])

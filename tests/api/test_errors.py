"""Every bad input of issue 2 is a 4xx with the OpenAI error body, and the server keeps serving."""

from __future__ import annotations

import json

import pytest

from .conftest import make_client
from .sse_util import assert_openai_error

BAD_JSON_BODIES = [
    # (description, body dict, expected status, expected param)
    ("wrong type for max_tokens", {"prompt": "a", "max_tokens": "lots"}, 400, "max_tokens"),
    ("wrong type for prompt", {"prompt": {"text": "a"}}, 400, "prompt"),
    ("mixed prompt list", {"prompt": ["a", 1]}, 400, "prompt"),
    ("float token ids", {"prompt": [1.5, 2]}, 400, "prompt"),
    ("empty prompt list", {"prompt": []}, 400, "prompt"),
    ("negative token id", {"prompt": [3, -1]}, 400, "prompt"),
    ("token id out of vocabulary", {"prompt": [1, 5000]}, 400, "prompt"),
    ("token ids out of vocabulary, nested", {"prompt": [[1], [999999999999]]}, 400, "prompt"),
    ("negative max_tokens", {"prompt": "a", "max_tokens": -1}, 400, "max_tokens"),
    ("zero max_tokens without echo", {"prompt": "a", "max_tokens": 0}, 400, "max_tokens"),
    ("huge max_tokens", {"prompt": "a", "max_tokens": 10**12}, 400, "max_tokens"),
    ("astronomic max_tokens", {"prompt": "a", "max_tokens": 2**200}, 400, "max_tokens"),
    ("n = 0", {"prompt": "a", "n": 0}, 400, "n"),
    ("n = 10000", {"prompt": "a", "n": 10000}, 400, "n"),
    ("too many choices", {"prompt": ["a"] * 10, "n": 10}, 400, "n"),
    ("temperature 5", {"prompt": "a", "temperature": 5}, 400, "temperature"),
    ("negative temperature", {"prompt": "a", "temperature": -0.1}, 400, "temperature"),
    ("top_p 1.5", {"prompt": "a", "top_p": 1.5}, 400, "top_p"),
    ("logprobs 50", {"prompt": "a", "logprobs": 50}, 400, "logprobs"),
    ("stop with 100 entries", {"prompt": "a", "stop": [f"s{i}" for i in range(100)]}, 400, "stop"),
    ("empty stop string", {"prompt": "a", "stop": ""}, 400, "stop"),
    ("empty string in stop list", {"prompt": "a", "stop": ["\n", ""]}, 400, "stop"),
    ("best_of below n", {"prompt": "a", "n": 3, "best_of": 2}, 400, "best_of"),
    ("best_of with stream", {"prompt": "a", "best_of": 3, "stream": True}, 400, "best_of"),
    ("presence_penalty 3", {"prompt": "a", "presence_penalty": 3}, 400, "presence_penalty"),
    ("logit_bias key not a token id", {"prompt": "a", "logit_bias": {"hello": 1}}, 400, "logit_bias"),
    ("logit_bias key a superscript digit", {"prompt": "a", "logit_bias": {"\u00b2": 1}}, 400, "logit_bias"),
    ("logit_bias key a circled digit", {"prompt": "a", "logit_bias": {"\u2460": 1}}, 400, "logit_bias"),
    ("logit_bias key of 5,000 digits", {"prompt": "a", "logit_bias": {"9" * 5000: 1}}, 400, "logit_bias"),
    ("logit_bias key out of vocabulary", {"prompt": "a", "logit_bias": {"5000": 1}}, 400, "logit_bias"),
    ("logit_bias value 1000", {"prompt": "a", "logit_bias": {"5": 1000}}, 400, "logit_bias.5"),
    ("stream not a bool", {"prompt": "a", "stream": "yes please"}, 400, "stream"),
    (
        "stream_options not an object",
        {"prompt": "a", "stream": True, "stream_options": 3},
        400,
        "stream_options",
    ),
    ("seed beyond 64 bits", {"prompt": "a", "seed": 2**70}, 400, "seed"),
    ("suffix not a string", {"prompt": "a", "suffix": 5}, 400, "suffix"),
]


@pytest.fixture(scope="module")
def shared_client():
    with make_client() as c:
        yield c


def _still_serving(c) -> None:
    r = c.post("/v1/completions", json={"prompt": "still there?", "max_tokens": 2})
    assert r.status_code == 200 and r.json()["choices"][0]["text"]


@pytest.mark.parametrize(
    ("what", "body", "status", "param"), BAD_JSON_BODIES, ids=[b[0] for b in BAD_JSON_BODIES]
)
def test_bad_fields(shared_client, what, body, status, param):
    r = shared_client.post("/v1/completions", json=body)
    assert_openai_error(r, status, param=param)
    assert r.headers["x-should-retry"] == "false"
    _still_serving(shared_client)


RAW_BODIES = [
    # (description, raw bytes, content type, expected status)
    ("malformed JSON", b'{"prompt": "a",', "application/json", 400),
    ("JSON array", b'["a"]', "application/json", 400),
    ("JSON string", b'"a"', "application/json", 400),
    ("empty body", b"", "application/json", 400),
    ("NaN", b'{"prompt": "a", "temperature": NaN}', "application/json", 400),
    ("overflowing float", b'{"prompt": "a", "temperature": 1e999}', "application/json", 400),
    ("5000-digit integer", b'{"prompt": "a", "max_tokens": ' + b"9" * 5000 + b"}", "application/json", 400),
    ("deep nesting", b'{"prompt": ' + b"[" * 100000 + b"]" * 100000 + b"}", "application/json", 400),
    ("invalid UTF-8", b'{"prompt": "\xff\xfe caf\xe9"}', "application/json", 400),
    ("lone surrogate escape", b'{"prompt": "a\\ud800b"}', "application/json", 400),
    ("form body", b"prompt=hello&max_tokens=5", "application/x-www-form-urlencoded", 415),
    (
        "multipart body",
        b"--x\r\nContent-Disposition: form-data; name=prompt\r\n\r\nhi\r\n--x--",
        "multipart/form-data; boundary=x",
        415,
    ),
]


@pytest.mark.parametrize(("what", "raw", "ctype", "status"), RAW_BODIES, ids=[b[0] for b in RAW_BODIES])
def test_bad_bodies(shared_client, what, raw, ctype, status):
    r = shared_client.post("/v1/completions", content=raw, headers={"content-type": ctype})
    assert_openai_error(r, status)
    _still_serving(shared_client)


def test_ten_megabyte_prompt_is_413(shared_client):
    body = json.dumps({"prompt": "x" * (10 * 1024 * 1024)}).encode()
    r = shared_client.post("/v1/completions", content=body, headers={"content-type": "application/json"})
    err = assert_openai_error(r, 413)
    assert err["code"] == "request_too_large"
    _still_serving(shared_client)


def test_json_with_another_content_type_is_accepted(shared_client):
    # `curl -d '{...}'` sends application/x-www-form-urlencoded; text/plain is common too.
    for ctype in ("text/plain", "application/x-www-form-urlencoded", ""):
        r = shared_client.post("/v1/completions", content=b'{"prompt": "a"}', headers={"content-type": ctype})
        assert r.status_code == 200, (ctype, r.text)


def test_unknown_route_and_wrong_method(shared_client):
    err = assert_openai_error(shared_client.post("/v2/whatever", json={}), 404)
    assert err["code"] == "not_found"
    assert_openai_error(shared_client.get("/v1/completions"), 405)
    assert_openai_error(shared_client.get("/nope"), 404)


def test_validation_errors_are_never_422(shared_client):
    r = shared_client.post("/v1/completions", json={"prompt": "a", "n": "three"})
    assert r.status_code == 400 and "detail" not in r.json()


def test_missing_text_for_autocomplete_is_400(shared_client):
    err = assert_openai_error(shared_client.post("/autocomplete", json={"txt": "a"}), 400, param="text")
    assert err["code"] == "missing_required_parameter"


class TestApiKey:
    def test_no_key_configured_never_401(self):
        with make_client() as c:
            for auth in ("Bearer ghu_copilots_own_token", "token abc", "", "Basic Zm9v"):
                r = c.post(
                    "/v1/engines/copilot-codex/completions",
                    json={"prompt": "a"},
                    headers={"authorization": auth},
                )
                assert r.status_code == 200

    def test_key_required_when_configured(self):
        with make_client(api_key="s3cret") as c:
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret"}):
                r = c.post("/v1/completions", json={"prompt": "a"}, headers=headers)
                err = assert_openai_error(r, 401)
                assert err["code"] == "invalid_api_key"
                assert r.headers["x-should-retry"] == "false"
            ok = {"authorization": "Bearer s3cret"}
            assert c.post("/v1/completions", json={"prompt": "a"}, headers=ok).status_code == 200
            assert c.get("/v1/models", headers=ok).status_code == 200
            assert c.get("/v1/models").status_code == 401
            assert c.post("/autocomplete", json={"text": "a"}).status_code == 401
            # Operational routes stay open.
            assert c.get("/health").status_code == 200
            assert c.get("/metrics").status_code == 200

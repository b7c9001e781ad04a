"""Completions over a scripted FakeEngine: response shapes, SSE framing, n/index mapping, echo,
logprobs, usage, the Copilot trim computation, and engine errors before/after the 200."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from codecomplete.engine.types import ChoiceDelta, EngineError, GenerationRequest, RequestOutput, TokenLogprob

from .conftest import make_client
from .fake_engine import FakeEngine, token_text
from .sse_util import assert_openai_error, parse_sse, read_like_copilot


def expected_text(steps: int, j: int) -> str:
    return "".join(token_text(k, j) for k in range(steps))


def test_non_streaming_shape_and_usage(client):
    r = client.post("/v1/completions", json={"model": "fake-model", "prompt": "a b c", "max_tokens": 3})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["id", "object", "created", "model", "choices", "usage"]
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion" and body["created"] > 0
    assert body["model"] == "fake-model"
    assert body["choices"] == [
        {"text": expected_text(3, 0), "index": 0, "logprobs": None, "finish_reason": "length"}
    ]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


def test_list_of_prompts_and_n_map_to_indices(client, fake):
    r = client.post("/v1/completions", json={"prompt": ["x", "y y"], "n": 3, "max_tokens": 2})
    body = r.json()
    assert [c["index"] for c in body["choices"]] == list(range(6))
    # choice index = prompt_index * n + j; the fake's text says which j produced it
    for c in body["choices"]:
        assert c["text"] == expected_text(2, c["index"] % 3)
    assert [q.prompt for q in fake.requests] == ["x", "y y"]
    assert body["usage"]["prompt_tokens"] == 1 + 2
    assert body["usage"]["completion_tokens"] == 2 * 3 * 2


def test_token_id_prompts(client, fake):
    r = client.post("/v1/completions", json={"prompt": [[1, 2, 3], [4]], "max_tokens": 1})
    assert r.status_code == 200
    assert [q.prompt_token_ids for q in fake.requests] == [[1, 2, 3], [4]]
    assert [q.prompt for q in fake.requests] == [None, None]
    r = client.post("/v1/completions", json={"prompt": [5, 6], "max_tokens": 1})
    assert r.status_code == 200 and fake.requests[-1].prompt_token_ids == [5, 6]


def test_fields_reach_the_engine(client, fake):
    body = {
        "prompt": "p",
        "suffix": "s",
        "max_tokens": 7,
        "temperature": 0,
        "top_p": 1,
        "n": 2,
        "stop": ["\n", "\ndef "],
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logit_bias": {"7": -100, "12": 5},
        "seed": 42,
        "user": "me",
        "nwo": "org/repo",
        "feature_flags": {"x": 1},
    }
    assert client.post("/v1/completions", json=body).status_code == 200
    q = fake.requests[-1]
    assert q.suffix == "s"
    p = q.params
    assert (p.max_tokens, p.temperature, p.top_p, p.n) == (7, 0.0, 1.0, 2)
    assert p.greedy
    assert p.stop == ["\n", "\ndef "]
    assert (p.presence_penalty, p.frequency_penalty, p.seed) == (0.5, -0.5, 42)
    assert p.logit_bias == {7: -100.0, 12: 5.0}
    assert p.indent_trim is None


def test_token_healing_field_reaches_the_engine(client, fake):
    client.post("/v1/completions", json={"prompt": "import num"})
    assert fake.requests[-1].params.token_healing is None  # the server's --token-healing decides
    for value in (False, True):
        client.post("/v1/completions", json={"prompt": "import num", "token_healing": value})
        assert fake.requests[-1].params.token_healing is value
    r = client.post("/v1/completions", json={"prompt": "p", "token_healing": "sometimes"})
    assert_openai_error(r, 400, param="token_healing")


def test_nulls_mean_defaults(client, fake):
    body = {"prompt": "p", "stream": None, "echo": None, "n": None, "max_tokens": None, "temperature": None}
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    p = fake.requests[-1].params
    assert (p.n, p.max_tokens, p.temperature, p.echo) == (1, 16, 1.0, False)


def test_stop_as_string(client, fake):
    client.post("/v1/completions", json={"prompt": "p", "stop": "\n"})
    assert fake.requests[-1].params.stop == ["\n"]
    client.post("/v1/completions", json={"prompt": "p", "stop": []})
    assert fake.requests[-1].params.stop == []


def test_streaming_framing_and_finish_reasons(client):
    r = client.post("/v1/completions", json={"prompt": "a", "max_tokens": 4, "n": 2, "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = parse_sse(r.content)
    assert len(chunks) == 4  # one per engine step, both choices in it
    for k, chunk in enumerate(chunks):
        assert list(chunk) == ["id", "object", "created", "model", "choices"]
        assert chunk["id"] == chunks[0]["id"] and chunk["created"] == chunks[0]["created"]
        for c in chunk["choices"]:
            assert c["text"] == token_text(k, c["index"])
            assert c["finish_reason"] == ("length" if k == 3 else None)
    copilot = read_like_copilot(r.content)
    assert {i: c["text"] for i, c in copilot.items()} == {0: expected_text(4, 0), 1: expected_text(4, 1)}
    assert all(c["finishes"] == 1 for c in copilot.values())


def test_stream_false_is_plain_json(client):
    r = client.post("/v1/completions", json={"prompt": "a", "stream": False})
    assert r.headers["content-type"] == "application/json"
    assert r.json()["choices"][0]["text"]


def test_include_usage_adds_one_final_chunk(client):
    r = client.post(
        "/v1/completions",
        json={"prompt": "a b", "max_tokens": 2, "stream": True, "stream_options": {"include_usage": True}},
    )
    chunks = parse_sse(r.content)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    # Without include_usage there is no usage key in the chunks at all.
    chunks = parse_sse(client.post("/v1/completions", json={"prompt": "a", "stream": True}).content)
    assert all("usage" not in c for c in chunks)


def test_echo_puts_the_prompt_in_front(client):
    body = client.post(
        "/v1/completions", json={"prompt": "def f", "echo": True, "max_tokens": 2, "n": 2}
    ).json()
    assert [c["text"] for c in body["choices"]] == ["def f" + expected_text(2, j) for j in range(2)]
    chunks = parse_sse(
        client.post(
            "/v1/completions", json={"prompt": "def f", "echo": True, "max_tokens": 2, "stream": True}
        ).content
    )
    assert chunks[0]["choices"][0]["text"] == "def f" + token_text(0, 0)  # echo and first token, one entry
    assert "".join(c["choices"][0]["text"] for c in chunks) == "def f" + expected_text(2, 0)


def test_echo_with_zero_max_tokens_scores_the_prompt(client):
    body = client.post(
        "/v1/completions", json={"prompt": "a bb", "echo": True, "max_tokens": 0, "logprobs": 1}
    ).json()
    c = body["choices"][0]
    assert c["text"] == "a bb"
    assert c["logprobs"]["tokens"] == ["a", " bb"]
    assert c["logprobs"]["token_logprobs"] == [None, -0.5]
    assert c["logprobs"]["top_logprobs"] == [None, {" bb": -0.5, "alt": -1.5}]
    assert c["logprobs"]["text_offset"] == [0, 1]


def test_logprobs_format(client):
    body = client.post("/v1/completions", json={"prompt": "x", "max_tokens": 3, "logprobs": 2}).json()
    lp = body["choices"][0]["logprobs"]
    assert list(lp) == ["tokens", "token_logprobs", "top_logprobs", "text_offset"]
    assert lp["tokens"] == [token_text(k, 0) for k in range(3)]
    assert lp["token_logprobs"] == pytest.approx([-0.1, -0.2, -0.3])
    assert all(len(t) == 2 for t in lp["top_logprobs"])
    assert lp["text_offset"] == [0, 3, 7]  # "t00", " t10", " t20"
    text = body["choices"][0]["text"]
    assert [text[o : o + len(t)] for o, t in zip(lp["text_offset"], lp["tokens"], strict=True)] == lp[
        "tokens"
    ]


def test_logprobs_with_echo_offsets_include_the_prompt(client):
    body = client.post(
        "/v1/completions", json={"prompt": "ab cd", "echo": True, "max_tokens": 2, "logprobs": 1}
    ).json()
    c = body["choices"][0]
    lp = c["logprobs"]
    assert lp["tokens"] == ["ab", " cd", "t00", " t10"]
    assert lp["text_offset"] == [0, 2, 5, 8]
    assert [c["text"][o : o + len(t)] for o, t in zip(lp["text_offset"], lp["tokens"], strict=True)] == lp[
        "tokens"
    ]


def test_streamed_logprobs_offsets_are_absolute(client):
    chunks = parse_sse(
        client.post(
            "/v1/completions", json={"prompt": "x", "max_tokens": 3, "logprobs": 0, "stream": True}
        ).content
    )
    offsets = [o for c in chunks for o in c["choices"][0]["logprobs"]["text_offset"]]
    assert offsets == [0, 3, 7]


def test_trim_by_indentation_sets_the_engine_cut(client, fake):
    prompt = "# Path: a.py\nclass A:\n    def f(self):\n"
    extra = {"language": "python", "next_indent": 8, "trim_by_indentation": True, "prompt_tokens": 9}
    client.post("/v1/completions", json={"prompt": prompt, "extra": extra})
    assert fake.requests[-1].params.indent_trim == 8
    extra["next_indent"] = 0
    client.post("/v1/completions", json={"prompt": prompt, "extra": extra})
    assert fake.requests[-1].params.indent_trim == 4  # the last non-blank prompt line's indentation
    extra["trim_by_indentation"] = False
    client.post("/v1/completions", json={"prompt": prompt, "extra": extra})
    assert fake.requests[-1].params.indent_trim is None


def test_engine_name_picks_a_served_model_else_the_default(client, fake):
    assert client.post("/v1/engines/codegen/completions", json={"prompt": "a"}).json()["model"] == "codegen"
    assert fake.requests[-1].model == "codegen"
    r = client.post("/v1/engines/copilot-codex/completions", json={"prompt": "a", "model": "codegen"})
    assert r.json()["model"] == "fake-model"  # the engine in the path wins over `model`
    r = client.post("/v1/completions", json={"prompt": "a", "model": "fastertransformer"})
    assert r.status_code == 200 and r.json()["model"] == "fake-model"
    r = client.post("/v1/engines/org/some-model/completions", json={"prompt": "a"})
    assert r.status_code == 200


def _failing_script(when: int):
    async def script(request: GenerationRequest) -> AsyncIterator[RequestOutput]:
        for k in range(when):
            yield RequestOutput(request.request_id, choices=[ChoiceDelta(0, text=f"x{k}", token_ids=[k])])
        yield RequestOutput(
            request.request_id,
            error=EngineError("prompt rejected", type="invalid_request_error", param="prompt", status=400),
            finished=True,
        )

    return script


def test_engine_error_before_the_first_token_is_a_real_status():
    with make_client(FakeEngine(_failing_script(0))) as c:
        for stream in (False, True):
            r = c.post("/v1/completions", json={"prompt": "a", "stream": stream})
            assert_openai_error(r, 400, param="prompt")
            assert r.headers["x-should-retry"] == "false"


def test_engine_error_mid_stream_is_an_error_event_then_done():
    with make_client(FakeEngine(_failing_script(2))) as c:
        r = c.post("/v1/completions", json={"prompt": "a", "stream": True})
        assert r.status_code == 200
        events = parse_sse(r.content)
        assert [e["choices"][0]["text"] for e in events[:2]] == ["x0", "x1"]
        assert events[-1] == {
            "error": {
                "message": "prompt rejected",
                "type": "invalid_request_error",
                "param": "prompt",
                "code": None,
            }
        }
        # Non-streaming: the whole answer is the error.
        assert_openai_error(c.post("/v1/completions", json={"prompt": "a"}), 400)


def test_queue_full_is_429_with_retry_after():
    engine = FakeEngine(max_running=0)
    with make_client(engine) as c:
        for stream in (False, True):
            r = c.post("/v1/completions", json={"prompt": "a", "stream": stream})
            err = assert_openai_error(r, 429)
            assert err["code"] == "queue_full"
            assert r.headers["retry-after"] == "3"  # ceil(2.5)
            assert "x-should-retry" not in r.headers  # a retry can help here


def test_a_choice_ends_once_even_if_the_engine_repeats_itself():
    async def script(request):
        yield RequestOutput(request.request_id, choices=[ChoiceDelta(0, text="a", finish_reason="stop")])
        yield RequestOutput(
            request.request_id, choices=[ChoiceDelta(0, text="b", finish_reason="length")], finished=True
        )

    with make_client(FakeEngine(script)) as c:
        body = c.post("/v1/completions", json={"prompt": "a"}).json()
        assert body["choices"][0] == {"text": "a", "index": 0, "logprobs": None, "finish_reason": "stop"}
        chunks = parse_sse(c.post("/v1/completions", json={"prompt": "a", "stream": True}).content)
        assert [ch["choices"] for ch in chunks] == [
            [{"text": "a", "index": 0, "logprobs": None, "finish_reason": "stop"}]
        ]


def test_infinite_logprobs_become_a_finite_floor():
    async def script(request):
        lp = [TokenLogprob("a", float("-inf"), {"a": float("-inf"), "b": -0.1}, 0)]
        yield RequestOutput(
            request.request_id,
            choices=[ChoiceDelta(0, text="a", logprobs=lp, finish_reason="stop")],
            finished=True,
        )

    with make_client(FakeEngine(script)) as c:
        lp = c.post("/v1/completions", json={"prompt": "x", "logprobs": 1}).json()["choices"][0]["logprobs"]
        assert lp["token_logprobs"] == [-9999.0] and lp["top_logprobs"] == [{"a": -9999.0, "b": -0.1}]
        chunks = parse_sse(
            c.post("/v1/completions", json={"prompt": "x", "logprobs": 1, "stream": True}).content
        )
        assert chunks[0]["choices"][0]["logprobs"]["token_logprobs"] == [-9999.0]


def test_an_engine_crash_mid_stream_is_still_an_error_event_then_done():
    async def script(request):
        yield RequestOutput(request.request_id, choices=[ChoiceDelta(0, text="a", token_ids=[1])])
        raise RuntimeError("CUDA error: device-side assert triggered")

    with make_client(FakeEngine(script)) as c:
        r = c.post("/v1/completions", json={"prompt": "a", "stream": True})
        events = parse_sse(r.content)
        assert events[0]["choices"][0]["text"] == "a"
        assert events[-1]["error"]["type"] == "server_error"
        assert "CUDA" not in events[-1]["error"]["message"]  # internals stay in the server log
        assert_openai_error(c.post("/v1/completions", json={"prompt": "a"}), 500)

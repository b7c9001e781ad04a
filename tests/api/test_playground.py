"""The playground's server side without a browser: the page and its files, the events route, and
`"debug": true` (what the prompt panel shows). The browser test is test_playground_browser.py."""

from __future__ import annotations

import json

import pytest

from codecomplete.api.completions.debug import PromptDecoder, healed_tail, prompt_debug

from .conftest import make_client
from .sse_util import assert_openai_error


def test_the_page_and_its_files_are_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="code"' in r.text and "/playground/playground.js" in r.text
    js = client.get("/playground/playground.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "/v1/completions" in js.text and "debug: true" in js.text
    assert client.get("/playground/playground.css").headers["content-type"].startswith("text/css")
    # Nothing outside the fixed list, whatever the path says.
    for bad in ("/playground/router.py", "/playground/..%2frouter.py", "/playground/%2e%2e/__init__.py"):
        assert_openai_error(client.get(bad), 404)


def test_the_page_loads_nothing_from_elsewhere(client):
    """No CDN, no font service: the page works offline (the issue: no network at run time)."""
    for path in ("/", "/playground/playground.js", "/playground/playground.css"):
        text = client.get(path).text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path


def test_suggestion_events_are_counted(client):
    for event in ("view", "view", "select"):
        assert client.post("/playground/events", json={"event": event}).status_code == 204
    text = client.get("/metrics").text
    assert 'codecomplete_client_events_total{client="playground",event="view"} 2.0' in text
    assert 'codecomplete_client_events_total{client="playground",event="select"} 1.0' in text
    assert_openai_error(client.post("/playground/events", json={"event": "liked"}), 400, param="event")
    assert_openai_error(client.post("/playground/events", content=b"shown"), 400)


def test_events_need_the_api_key_when_one_is_set():
    with make_client(api_key="k") as c:
        assert c.get("/").status_code == 200  # the page itself is public, like /docs
        assert_openai_error(c.post("/playground/events", json={"event": "view"}), 401)
        r = c.post("/playground/events", json={"event": "view"}, headers={"Authorization": "Bearer k"})
        assert r.status_code == 204


def test_debug_is_only_there_when_asked(client, fake):
    r = client.post("/v1/completions", json={"prompt": "def f(x):", "max_tokens": 3})
    assert "debug" not in r.json()
    r = client.post(
        "/v1/completions", json={"prompt": "def f(x):", "suffix": "\nf(1)", "max_tokens": 3, "debug": True}
    )
    body = r.json()
    debug = body["debug"]
    (p,) = debug["prompts"]
    # What the engine's first output said, passed through.
    assert p["prompt_text"] == "def f(x):" and p["prompt_token_ids"] == [0, 1]
    assert p["num_prompt_tokens"] == 2 == body["usage"]["prompt_tokens"]
    assert p["fim"] is True and p["fim_template"] == fake.model_info.fim_template
    assert p["model_prompt"] is None  # this app has no tokenizer to decode with
    assert debug["completion_tokens"] == 3 and debug["ttft_s"] <= debug["duration_s"]
    assert debug["tokens_per_s"] > 0
    assert fake.requests[-1].suffix == "\nf(1)"  # debug changes nothing the engine is asked


def test_debug_when_streaming_is_a_last_chunk(client):
    body = {"prompt": ["a b", "c"], "max_tokens": 2, "stream": True, "debug": True}
    lines = [ln for ln in client.post("/v1/completions", json=body).text.split("\n\n") if ln]
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2].removeprefix("data: "))
    assert last["choices"] == [] and [p["index"] for p in last["debug"]["prompts"]] == [0, 1]
    assert all("debug" not in json.loads(ln.removeprefix("data: ")) for ln in lines[:-2])


def test_decoder_shows_the_exact_prompt(tiny_model_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    text = "<fim_prefix>def add(a, b):\n    return<fim_suffix>\n<fim_middle>"
    ids = tok.encode(text).ids
    decoder = PromptDecoder.from_model(tiny_model_dir)
    p = prompt_debug(0, "def add(a, b):\n    return", "\n", "codecomplete", None, ids, decoder)
    assert p.model_prompt == text and "".join(p.prompt_tokens) == text
    assert p.prompt_tokens[0] == "<fim_prefix>" and len(p.prompt_tokens) == len(ids)
    assert PromptDecoder.from_model(tiny_model_dir / "missing").decode(ids) is None


@pytest.mark.parametrize(
    ("model_prompt", "prompt", "tail"),
    [
        ("import", "import num", " num"),
        ("<|endoftext|>    ", "    ret", "ret"),
        ("import numpy", "import numpy", None),
        ("", "", None),
    ],
)
def test_healed_tail(model_prompt, prompt, tail):
    assert healed_tail(model_prompt, prompt) == tail

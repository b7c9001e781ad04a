"""The editor protocols over a scripted engine: llama.cpp's /infill, Ollama's /api/*, Tabby's
/v1/completions body, /v1/health and /v1/events. What each sends the engine, what each answers,
and that every bad body is a 4xx in that protocol's own error shape (never a 500)."""

from __future__ import annotations

import json
import random

import pytest

from codecomplete.api.llamacpp.protocol import indent_cut, select_fields
from codecomplete.engine.types import ChoiceDelta, RequestOutput
from codecomplete.models.fim import ContextChunk, comment_prefix, render_context

from .conftest import make_client
from .fake_engine import FakeEngine


def scripted(*pieces: str, finish: str = "stop"):
    """An engine script that generates `pieces` then ends with `finish`."""

    async def script(request):
        n = len(request.prompt.split()) if request.prompt else 1
        first = RequestOutput(request.request_id, prompt_text=request.prompt, num_prompt_tokens=n)
        if not pieces:
            first.choices = [ChoiceDelta(index=0, finish_reason=finish)]
            first.finished = True
            yield first
            return
        for k, piece in enumerate(pieces):
            out = first if k == 0 else RequestOutput(request.request_id, num_prompt_tokens=n)
            last = k == len(pieces) - 1
            out.choices = [
                ChoiceDelta(index=0, text=piece, token_ids=[k], finish_reason=finish if last else None)
            ]
            out.num_generated_tokens = k + 1
            out.finished = last
            yield out

    return script


@pytest.fixture(scope="module")
def shared():
    engine = FakeEngine()
    with make_client(engine) as c:
        yield c, engine


# --- extra context -------------------------------------------------------------------------------


def test_render_context_repo_level_for_qwen():
    text = render_context(
        "qwen2.5-coder", [ContextChunk("lib/a.py", "def a():\n    return 1")], filename="b.py"
    )
    assert text == "<|repo_name|>myproject\n<|file_sep|>lib/a.py\ndef a():\n    return 1\n<|file_sep|>b.py\n"


def test_render_context_comments_for_other_families():
    chunks = [ContextChunk("a.py", "x = 1\n\ny = 2"), ContextChunk("b.py", "z = 3")]
    assert (
        render_context("starcoder", chunks) == "# Path: a.py\n# x = 1\n#\n# y = 2\n#\n# Path: b.py\n# z = 3\n"
    )
    assert render_context("codecomplete", chunks, language="typescript").startswith("// Path: a.py\n// x = 1")
    assert render_context("starcoder", []) == ""
    assert render_context("starcoder", [ContextChunk("a.py", "")]) == ""


def test_comment_prefix():
    assert comment_prefix("src/x.rs") == "//" and comment_prefix("q.sql") == "--"
    assert comment_prefix("Makefile") == "#" and comment_prefix(None, "go") == "//"


# --- llama.cpp /infill ---------------------------------------------------------------------------


def test_infill_sends_extra_then_prefix_then_middle_with_suffix(shared):
    c, engine = shared
    body = {
        "input_prefix": "import os\n",
        "input_suffix": "\nprint(x)\n",
        "input_extra": [{"filename": "util.py", "text": "def helper():\n    pass\n", "time": 3}],
        "prompt": "x = ",
        "n_predict": 4,
        "t_max_predict_ms": 250,
        "samplers": ["top_k", "top_p", "infill"],
        "top_k": 40,
        "top_p": 0.9,
        "id_slot": 0,
        "cache_prompt": True,
    }
    r = c.post("/infill", json=body)
    assert r.status_code == 200, r.text
    req = engine.requests[-1]
    assert req.prompt == "# Path: util.py\n# def helper():\n#     pass\nimport os\nx = "
    assert req.suffix == "\nprint(x)\n"
    p = req.params
    assert p.max_tokens == 4 and p.deadline_s == 0.25 and p.top_k == 40 and p.top_p == 0.9
    assert p.temperature == 1.0  # "temperature" is not in the sampler chain
    out = r.json()
    assert out["content"] == "t00 t10 t20 t30" and out["stop"] is True
    assert out["tokens_predicted"] == 4 and out["tokens_evaluated"] > 0
    assert out["stop_type"] == "limit" and out["truncated"] is False
    assert set(out["timings"]) >= {
        "prompt_n",
        "prompt_ms",
        "predicted_n",
        "predicted_ms",
        "predicted_per_second",
    }


def test_infill_response_fields_flatten_paths_like_llamacpp(shared):
    c, _ = shared
    fields = ["content", "timings/prompt_n", "timings/predicted_n", "truncated", "tokens_cached", "nope/x"]
    r = c.post("/infill", json={"input_prefix": "a", "n_predict": 2, "response_fields": fields})
    out = r.json()
    assert set(out) == {"content", "timings/prompt_n", "timings/predicted_n", "truncated", "tokens_cached"}
    assert out["timings/predicted_n"] == 2
    # llama.vim's cheap validity check before json_decode: compact `"content":"`.
    assert '"content":"' in r.text
    assert c.post("/infill", json={"n_predict": 0, "response_fields": [""]}).json() == {}


def test_infill_warmup_processes_the_prompt_only(shared):
    c, engine = shared
    body = {
        "input_prefix": "",
        "input_suffix": "",
        "prompt": "",
        "n_predict": 0,
        "samplers": [],
        "temperature": 0.0,
    }
    body["input_extra"] = [{"filename": "a.py", "text": "import sys\n"}]
    r = c.post("/infill", json=body)
    assert r.status_code == 200 and r.json()["content"] == ""
    assert engine.requests[-1].params.max_tokens == 0 and engine.requests[-1].suffix == ""


def test_infill_defaults_are_llamacpps(shared):
    c, engine = shared
    c.post("/infill", json={"input_prefix": "a"})
    p = engine.requests[-1].params
    assert (p.temperature, p.top_k, p.top_p, p.max_tokens) == (0.8, 40, 0.95, 256)  # -1: the context
    c.post("/infill", json={"input_prefix": "a", "samplers": "kt", "temperature": 0, "n_predict": 1})
    p = engine.requests[-1].params
    assert p.greedy and p.top_k == 40 and p.top_p == 1.0


def test_infill_stream_is_llamacpp_sse_without_done(shared):
    c, _ = shared
    r = c.post("/infill", json={"input_prefix": "a", "n_predict": 3, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(e[len("data: ") :]) for e in r.text.split("\n\n") if e]
    assert "".join(e["content"] for e in events) == "t00 t10 t20"
    assert [e["stop"] for e in events] == [False, False, False, True]
    assert "[DONE]" not in r.text and "timings" in events[-1]


def test_indent_cut_is_llamacpps_rule():
    assert indent_cut("x = 1\n    y\n", 4) is None
    assert indent_cut("x = 1\n  y = 2\n", 4) == 8  # keeps the line's indentation, cuts its text
    assert indent_cut("a\n\n    b", 4) == 2  # a blank line ends it too
    assert indent_cut("a\n   ", 4) is None  # nothing after the indentation yet
    assert indent_cut("a\nb", 0) is None


def test_infill_n_indent_cuts_and_stops():
    pieces = ("return 1\n", "    x = 2\n", "def g():\n", "    pass\n", "    return\n")
    engine = FakeEngine(script=scripted(*pieces), token_delay=0.05)
    with make_client(engine) as c:
        r = c.post("/infill", json={"input_prefix": "def f():\n", "prompt": "    ", "n_indent": 4})
        assert r.json()["content"] == "return 1\n    x = 2\n" and r.json()["stop_type"] == "limit"
        assert engine.cancelled  # generation stopped at the cut
        r = c.post("/infill", json={"input_prefix": "def f():\n", "n_indent": 4, "stream": True})
        events = [json.loads(e[len("data: ") :]) for e in r.text.split("\n\n") if e]
        assert "".join(e["content"] for e in events) == "return 1\n    x = 2\n"


def test_select_fields_without_list_is_everything():
    assert select_fields({"a": 1}, None) == {"a": 1}


INFILL_BAD = [
    ({"input_prefix": 5}, "input_prefix"),
    ({"input_extra": "x"}, "input_extra"),
    ({"input_extra": [{"filename": "a", "text": 3}]}, "input_extra"),
    ({"n_predict": "lots"}, "n_predict"),
    ({"n_predict": -5}, "n_predict"),
    ({"n_predict": 10**9}, "n_predict"),
    ({"temperature": 9}, "temperature"),
    ({"top_p": 2}, "top_p"),
    ({"stop": [""]}, "stop"),
    ({"stop": "\n"}, "stop"),
    ({"prompt": [1, 2]}, "prompt"),
    ({"n_indent": -1}, "n_indent"),
    ({"input_suffix": "\ud800"}, "input_suffix"),
]


@pytest.mark.parametrize("body,param", INFILL_BAD)
def test_infill_bad_bodies_get_llamacpp_errors(shared, body, param):
    c, _ = shared
    r = c.post("/infill", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == 400 and err["type"] == "invalid_request_error" and param in err["message"]


@pytest.mark.parametrize("raw", [b"{", b"[1]", b"\xff\xfe", b"null"])
def test_infill_bad_json_gets_llamacpp_errors(shared, raw):
    c, _ = shared
    r = c.post("/infill", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_infill_without_fim_is_501():
    with make_client(FakeEngine(fim_template=None)) as c:
        r = c.post("/infill", json={"input_prefix": "a"})
        assert r.status_code == 501 and r.json()["error"]["type"] == "not_supported_error"


def test_infill_api_key_error_is_llamacpps():
    with make_client(api_key="sekret") as c:
        r = c.post("/infill", json={"input_prefix": "a"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = c.post(
            "/infill", json={"input_prefix": "a", "n_predict": 1}, headers={"Authorization": "Bearer sekret"}
        )
        assert r.status_code == 200


def test_health_body_satisfies_ours_and_llamacpps():
    engine = FakeEngine()
    with make_client(engine) as c:
        assert c.get("/health").json()["status"] == "ok"
        engine.healthy = False
        r = c.get("/health")
        body = r.json()
        assert r.status_code == 503 and body["status"] == "unavailable"
        assert body["error"]["code"] == 503 and body["error"]["type"] == "unavailable_error"
        assert c.get("/props").status_code == 503


def test_props(shared):
    c, _ = shared
    out = c.get("/props").json()
    assert out["default_generation_settings"]["n_ctx"] == 256 and out["total_slots"] >= 1


# --- Ollama --------------------------------------------------------------------------------------


def test_ollama_generate_with_suffix_and_options(shared):
    c, engine = shared
    body = {
        "model": "whatever:latest",
        "prompt": "def add(a, b):\n",
        "suffix": "\nprint(add(1, 2))\n",
        "stream": False,
        "raw": True,
        "keep_alive": "30m",
        "options": {
            "num_predict": 3,
            "temperature": 0,
            "top_p": 0.5,
            "top_k": 7,
            "stop": ["\n\n"],
            "seed": 3,
        },
    }
    r = c.post("/api/generate", json=body)
    assert r.status_code == 200, r.text
    req = engine.requests[-1]
    assert req.prompt == body["prompt"] and req.suffix == body["suffix"]
    p = req.params
    assert p.greedy and (p.max_tokens, p.top_p, p.top_k, p.stop, p.seed) == (3, 0.5, 7, ["\n\n"], 3)
    out = r.json()
    assert out["response"] == "t00 t10 t20" and out["done"] is True and out["done_reason"] == "length"
    assert out["model"] == "fake-model"  # unknown names fall back to the served model
    assert out["eval_count"] == 3 and out["prompt_eval_count"] > 0 and out["total_duration"] > 0
    assert out["created_at"].endswith("Z")


def test_ollama_streams_ndjson_by_default(shared):
    c, engine = shared
    r = c.post("/api/generate", json={"model": "m", "prompt": "x", "options": {"num_predict": 2}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [x["done"] for x in lines] == [False, False, True]
    assert "".join(x["response"] for x in lines) == "t00 t10"
    assert lines[-1]["eval_count"] == 2 and "prompt_eval_duration" in lines[-1]
    assert engine.requests[-1].suffix is None  # no suffix: plain completion


def test_ollama_defaults(shared):
    c, engine = shared
    c.post("/api/generate", json={"model": "m", "prompt": "x", "stream": False})
    p = engine.requests[-1].params
    assert (p.temperature, p.top_p, p.top_k, p.max_tokens) == (0.8, 0.9, 40, 256)


def test_ollama_empty_prompt_loads(shared):
    c, _ = shared
    r = c.post("/api/generate", json={"model": "m", "stream": False})
    assert r.json()["done_reason"] == "load" and r.json()["done"] is True


OLLAMA_BAD = [
    ({"model": "m", "prompt": 5}, "prompt"),
    ({"model": "m", "prompt": "x", "options": {"num_predict": "x"}}, "num_predict"),
    ({"model": "m", "prompt": "x", "options": {"temperature": 9}}, "temperature"),
    ({"model": "m", "prompt": "x", "options": {"num_predict": 10**9}}, "num_predict"),
    ({"model": "m", "prompt": "x", "options": {"stop": [""]}}, "stop"),
    ({"model": "m", "prompt": "x", "options": 3}, "options"),
    ({"model": "m", "prompt": "x", "stream": "sure"}, "stream"),
    ({"model": "m", "prompt": "x", "images": ["aGk="]}, "images"),
    ({"model": "m", "prompt": "x", "format": "json"}, "format"),
    ({"model": "m", "prompt": "x", "template": "{{ .System }} {{ .Prompt }}"}, "template"),
    ({"model": "m", "prompt": "x", "context": [1, 2]}, "context"),
    ({"model": "m", "prompt": "\udc00"}, "prompt"),
]


@pytest.mark.parametrize("body,word", OLLAMA_BAD)
def test_ollama_bad_bodies_get_ollama_errors(shared, body, word):
    c, _ = shared
    r = c.post("/api/generate", content=json.dumps(body))  # ASCII: lone surrogates as \u escapes
    assert r.status_code == 400, r.text
    assert isinstance(r.json()["error"], str) and word in r.json()["error"]


@pytest.mark.parametrize("path", ["/api/generate", "/api/show"])
@pytest.mark.parametrize("raw", [b"{", b"[]", b"\xff"])
def test_ollama_bad_json_gets_ollama_errors(shared, path, raw):
    c, _ = shared
    r = c.post(path, content=raw)
    assert r.status_code == 400 and isinstance(r.json()["error"], str)


def test_ollama_plain_template_is_accepted(shared):
    c, _ = shared
    body = {
        "model": "m",
        "prompt": "x",
        "template": "{{ .Prompt }}",
        "stream": False,
        "options": {"num_predict": 1},
    }
    assert c.post("/api/generate", json=body).status_code == 200


def test_ollama_listing(shared):
    c, _ = shared
    tags = c.get("/api/tags").json()["models"]
    assert [m["name"] for m in tags] == ["fake-model", "codegen"] and all(m["digest"] for m in tags)
    show = c.post("/api/show", json={"model": "codegen"}).json()
    assert "insert" in show["capabilities"] and show["model_info"]["codecomplete.context_length"] == 256
    # Continue uses FIM with an Ollama model only when its template mentions .Suffix, and reads
    # `num_ctx` from `parameters` (one "key value" per line).
    assert ".Suffix" in show["template"] and show["parameters"] == "num_ctx 256"
    assert c.post("/api/show", json={"name": "codegen"}).status_code == 200  # Continue's spelling
    ours = {"model": "m", "prompt": "x", "template": show["template"], "stream": False}
    assert c.post("/api/generate", json=ours | {"options": {"num_predict": 1}}).status_code == 200
    ps = c.get("/api/ps").json()["models"]
    assert ps[0]["name"] == "fake-model" and ps[0]["context_length"] == 256
    assert c.get("/api/version").json()["version"]


def test_ollama_show_without_fim():
    with make_client(FakeEngine(fim_template=None)) as c:
        show = c.post("/api/show", json={"model": "x"}).json()
        assert show["template"] == "{{ .Prompt }}" and "insert" not in show["capabilities"]


def test_ollama_queue_full_is_ollama_error():
    engine = FakeEngine(max_running=0)
    with make_client(engine) as c:
        r = c.post("/api/generate", json={"model": "m", "prompt": "x", "stream": False})
        assert r.status_code == 429 and "Retry-After" in r.headers and "full" in r.json()["error"]


# --- Tabby ---------------------------------------------------------------------------------------

TABBY = {
    "language": "python",
    "segments": {
        "prefix": "def fib(n):\n    ",
        "suffix": "\n\nprint(fib(3))\n",
        "filepath": "src/fib.py",
        "git_url": "https://example.invalid/repo.git",
        "declarations": [{"filepath": "src/util.py", "body": "def memo(f):\n    return f"}],
        "relevant_snippets_from_changed_files": [{"filepath": "src/a.py", "body": "A = 1", "score": 0.9}],
        "relevant_snippets_from_recently_opened_files": [
            {"filepath": "src/b.py", "body": "B" * 800, "score": 1}
        ],
    },
    "temperature": None,
}


def test_tabby_body_on_v1_completions(shared):
    c, engine = shared
    r = c.post("/v1/completions", json=TABBY)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"].startswith("cmpl-") and out["choices"][0]["index"] == 0 and out["choices"][0]["text"]
    req = engine.requests[-1]
    # Declarations, then changed-file snippets; the 800-character one is over Tabby's budget.
    assert req.prompt == (
        "# Path: src/util.py\n# def memo(f):\n#     return f\n#\n# Path: src/a.py\n# A = 1\ndef fib(n):\n    "
    )
    assert req.suffix == "\n\nprint(fib(3))\n"
    assert req.params.max_tokens == 64 and req.params.temperature == 0.1


def test_tabby_empty_suffix_is_a_newline(shared):
    c, engine = shared
    c.post("/v1/completions", json={"segments": {"prefix": "x = "}})
    assert engine.requests[-1].suffix == "\n" and engine.requests[-1].prompt == "x = "


def test_openai_body_with_prompt_stays_openai(shared):
    c, engine = shared
    r = c.post("/v1/completions", json={"prompt": "x", "max_tokens": 2, "segments": {"prefix": "y"}})
    assert r.status_code == 200 and r.json()["object"] == "text_completion"
    assert engine.requests[-1].prompt == "x"
    r = c.post("/v1/completions", json={"prompt": "x", "max_tokens": "lots"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"


TABBY_BAD = [
    {"segments": {"suffix": "x"}},
    {"segments": "def f"},
    {"segments": {"prefix": 3}},
    {"segments": {"prefix": "a", "declarations": [{"filepath": "a"}]}},
    {"segments": {"prefix": "a", "relevant_snippets_from_changed_files": "x"}},
    {"segments": {"prefix": "a"}, "temperature": 7},
    {"segments": {"prefix": "a"}, "mode": "next_edit_suggestion"},
    {"segments": None},
    {"segments": {"prefix": "a", "declarations": [{"filepath": "a.py", "body": "\ud800"}]}},
    {"segments": {"prefix": "a", "filepath": "\udfff.py"}},
    {"segments": {"prefix": "a"}, "debug_options": {"raw_prompt": "\ud800"}},
]


@pytest.mark.parametrize("body", TABBY_BAD)
def test_tabby_bad_bodies_get_plain_text_400(shared, body):
    c, _ = shared
    r = c.post("/v1/completions", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("text/plain") and r.text


def test_tabby_health_and_events(shared):
    c, _ = shared
    for method in (c.get, c.post):
        h = method("/v1/health").json()
        assert h["model"] == "fake-model" and h["version"]["git_describe"] and "device" in h
    before = c.get("/metrics").text
    assert (
        c.post("/v1/events", json={"type": "view", "completion_id": "cmpl-1", "choice_index": 0}).status_code
        == 200
    )
    ok = {"type": "select", "completion_id": "cmpl-1", "choice_index": 0, "view_id": "v", "elapsed": 900}
    assert c.post("/v1/events?select_kind=line", json=ok).status_code == 200
    after = c.get("/metrics").text
    assert 'codecomplete_client_events_total{client="tabby",event="view"}' in after
    assert 'codecomplete_client_events_total{client="tabby",event="select_line"} 1.0' in after
    assert 'event="select_line"' not in before
    for bad in (
        {"type": "boo", "completion_id": "c", "choice_index": 0},
        {"type": "view"},
        {"type": "view", "completion_id": "c", "choice_index": -1},
    ):
        r = c.post("/v1/events", json=bad)
        assert r.status_code == 400 and r.headers["content-type"].startswith("text/plain")
    assert c.post("/v1/events", content=b"{").status_code == 400


def test_infill_n_cmpl_answers_a_list_like_llamacpp(shared):
    c, engine = shared
    r = c.post("/infill", json={"input_prefix": "a", "n_predict": 2, "n_cmpl": 3, "top_k": 40, "top_p": 0.99})
    out = r.json()
    assert isinstance(out, list) and [o["index"] for o in out] == [0, 1, 2]
    assert [o["content"] for o in out] == ["t00 t10", "t01 t11", "t02 t12"]
    assert all(o["tokens_predicted"] == 2 for o in out) and engine.requests[-1].params.n == 3
    r = c.post("/infill", json={"input_prefix": "a", "n_cmpl": 1000})
    assert r.status_code == 400 and "n_cmpl" in r.json()["error"]["message"]


def test_completion_route_is_the_prompt_as_is(shared):
    c, engine = shared
    prompt = "<fim_prefix>def f():<fim_suffix>\n<fim_middle>"
    r = c.post("/completion", json={"prompt": prompt, "n_predict": 2, "stream": True, "temperature": 0.2})
    events = [json.loads(e[len("data: ") :]) for e in r.text.split("\n\n") if e]
    assert "".join(e["content"] for e in events) == "t00 t10" and events[-1]["stop"] is True
    req = engine.requests[-1]
    assert req.prompt == prompt and req.suffix is None and req.params.temperature == 0.2
    assert c.post("/completion", json={"prompt": 3}).json()["error"]["code"] == 400


# --- random bodies: never a 5xx ------------------------------------------------------------------

FUZZ_FIELDS = {
    "/infill": ["input_prefix", "input_suffix", "input_extra", "prompt", "n_predict", "n_indent", "samplers",
                "temperature", "top_k", "top_p", "seed", "stop", "stream", "response_fields", "n_cmpl",
                "t_max_predict_ms"],
    "/completion": ["prompt", "n_predict", "stream", "stop", "temperature", "top_k", "samplers"],
    "/api/generate": ["model", "prompt", "suffix", "stream", "raw", "options", "template", "system",
                      "keep_alive", "format", "images"],
    "/api/show": ["model", "name", "verbose"],
    "/v1/completions": ["language", "segments", "temperature", "seed", "mode", "debug_options", "user"],
    "/v1/events": ["type", "completion_id", "choice_index", "view_id", "elapsed"],
}  # fmt: skip
OPTIONS = ["num_predict", "temperature", "top_p", "top_k", "stop", "seed", "presence_penalty", "num_ctx"]
SEGMENTS = [
    "prefix",
    "suffix",
    "filepath",
    "declarations",
    "relevant_snippets_from_changed_files",
    "clipboard",
]


@pytest.mark.parametrize("route", sorted(FUZZ_FIELDS))
def test_random_bodies_never_5xx(route):
    from .test_fuzz import _value

    rng = random.Random(route)
    statuses = set()
    with make_client(FakeEngine()) as c:
        for _ in range(60):
            body = {"segments": {"prefix": "x"}} if route == "/v1/completions" else {"n_predict": 2}
            for name in rng.sample(FUZZ_FIELDS[route], rng.randrange(1, min(5, len(FUZZ_FIELDS[route]) + 1))):
                body[name] = _value(rng)
            if route == "/api/generate" and rng.random() < 0.5:
                body["options"] = {k: _value(rng) for k in rng.sample(OPTIONS, 3)} | {"num_predict": 2}
            if route == "/v1/completions" and rng.random() < 0.5:
                body["segments"] = {k: _value(rng) for k in rng.sample(SEGMENTS, 3)}
                body["segments"].setdefault("prefix", "x")
            if route == "/infill" and rng.random() < 0.3:
                body["input_extra"] = [{"filename": _value(rng), "text": _value(rng)}]
            r = c.post(route, content=json.dumps(body), headers={"content-type": "application/json"})
            assert r.status_code < 500, (body, r.status_code, r.text)
            statuses.add(r.status_code)
    assert 400 in statuses  # the generator does produce bad bodies

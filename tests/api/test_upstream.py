"""--backend upstream against a fault-injecting fake OpenAI-compatible server (tests/api/fake_upstream.py):
our side builds the FIM prompt, applies stops / trim / the deadline, fails over before any text,
never replays a request that streamed text, ends a broken stream with an error event, and /health
follows the upstreams. Real HTTP on loopback at both hops (uvicorn in threads)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx
import pytest

from codecomplete.api import build_app
from codecomplete.engine.types import GenerationRequest, SamplingParams
from codecomplete.engine.upstream import UpstreamConfig, UpstreamEngine

from .conftest import ServerThread, free_port_number, settings
from .fake_upstream import FakeUpstream
from .sse_util import assert_openai_error, parse_sse

MODEL = Path(__file__).resolve().parents[2] / "models" / "codecomplete-tiny-py"  # tokenizer + config only


@contextlib.contextmanager
def fakes(count: int = 1, **kw):
    servers = [FakeUpstream(**kw) for _ in range(count)]
    threads = [ServerThread(f.app, free_port_number()) for f in servers]
    with contextlib.ExitStack() as stack:
        for t in threads:
            stack.enter_context(t)
        yield servers, [t.base for t in threads]


@contextlib.contextmanager
def proxy(urls: list[str], **kw):
    kw.setdefault("timeout_s", 5.0)
    engine = UpstreamEngine(UpstreamConfig(urls=urls, model=str(MODEL), served_names=["tiny"], **kw))
    with ServerThread(build_app(settings(), engine), free_port_number()) as server:
        yield server.base, engine


def post(base: str, **body) -> httpx.Response:
    body.setdefault("prompt", "def f():\n    x = 1\n")
    body.setdefault("max_tokens", 40)
    return httpx.post(base + "/v1/completions", json=body, timeout=30)


def test_suffix_is_sent_as_the_models_fim_prompt_and_stops_are_ours():
    with fakes() as ([fake], [url]), proxy([url]) as (base, _):
        r = post(base, prompt="def f():\n", suffix="\nprint(f())\n", stop=["\ndef "])
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0] == {
            "text": "    return 1\n",
            "index": 0,
            "logprobs": None,
            "finish_reason": "stop",
        }
        sent = fake.bodies[-1]
        assert "suffix" not in sent  # vLLM answers 400 to it on models without FIM rendering
        assert sent["model"] == "fake-model"  # from the upstream's /v1/models
        tokens = [t for t in ("<fim_prefix>", "<fim_suffix>", "<fim_middle>") if t in sent["prompt"]]
        assert len(tokens) == 3 and "def f():\n" in sent["prompt"] and "print(f())" in sent["prompt"]


def test_tokens_prompt_format_sends_the_local_engines_ids():
    from codecomplete.engine.inputs import prepare_prompt
    from codecomplete.engine.remote import load_prompt_model

    pm = load_prompt_model(str(MODEL))
    req = GenerationRequest("x", SamplingParams(max_tokens=40), prompt="def f():\n", suffix="\nprint(f())\n")
    expected = prepare_prompt(req, pm.tokenizer, pm.spec).token_ids
    with fakes() as ([fake], [url]), proxy([url], prompt_format="tokens") as (base, _):
        assert post(base, prompt="def f():\n", suffix="\nprint(f())\n").status_code == 200
    assert fake.bodies[-1]["prompt"] == expected
    assert pm.tokenizer(pm.prompt_text(expected), add_special_tokens=False)["input_ids"] == expected


def test_copilot_trim_by_indentation_is_applied_to_the_upstream_text():
    with fakes() as (_, [url]), proxy([url]) as (base, _):
        body = {"prompt": "def f():\n    x = 1\n", "extra": {"trim_by_indentation": True}, "stream": True}
        r = post(base, **body)
        events = parse_sse(r.content)
        text = "".join(c["text"] for e in events for c in e["choices"])
        assert text == "    return 1"  # cut before the blank line and `def g` (indentation 0 < 4)
        assert [c["finish_reason"] for e in events for c in e["choices"]][-1] == "stop"


def test_connection_errors_and_500s_fail_over_before_any_text():
    dead = f"http://127.0.0.1:{free_port_number()}"
    with fakes(3) as (servers, urls), proxy([dead, *urls]) as (base, engine):
        servers[0].mode = "error500"
        servers[1].mode = "dropfirst"
        for _ in range(4):  # whichever upstream round-robin starts at, the good one answers
            r = post(base, stop=["\n"])
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["text"] == "    return 1"
        m = engine.metrics()
        assert m["upstream_retries_total"] >= 4 and m["upstream_errors_total"] >= 4
        assert httpx.get(base + "/health").status_code == 200  # one upstream is enough
        for fake in servers:
            fake.mode = "error500"
        r = post(base)
        assert_openai_error(r, 502)
        assert "500" in r.json()["error"]["message"]


def test_one_files_keystrokes_stay_on_one_upstream():
    head = "# Path: app/main.py\nimport os\n\n\ndef main():\n"
    with fakes(3) as (servers, urls), proxy(urls) as (base, _):
        for i in range(6):  # typing further down the same file
            assert post(base, prompt=head + "    x = " + "1" * i).status_code == 200
        assert sorted(len(f.bodies) for f in servers) == [0, 0, 6]
        for i in range(12):  # other files spread over the upstreams
            assert post(base, prompt=f"# Path: pkg/mod{i}.py\n" + head).status_code == 200
        assert all(f.bodies for f in servers)


def test_an_upstreams_400_reaches_the_client_with_its_param():
    with fakes(2) as (servers, urls), proxy(urls) as (base, _):
        for fake in servers:
            fake.mode = "error400"
        r = post(base, logprobs=1)
        assert_openai_error(r, 400, param="logprobs")
        assert sum(len(f.bodies) for f in servers) == 1  # a 4xx is not retried elsewhere


def test_token_healing_is_a_400_naming_the_parameter():
    with fakes() as ([fake], [url]), proxy([url]) as (base, _):
        assert_openai_error(post(base, token_healing=True), 400, param="token_healing")
        assert fake.bodies == []
        assert post(base, token_healing=False).status_code == 200


@pytest.mark.parametrize("mode", ["drop", "badjson", "garbage"])
def test_a_broken_stream_ends_with_an_error_event_and_is_never_replayed(mode):
    with fakes(2) as (servers, urls), proxy(urls) as (base, _):
        for fake in servers:
            fake.mode = mode
        r = post(base, stream=True)
        if mode == "drop":
            # Text had streamed: an error event then [DONE], and no second upstream saw the request.
            assert r.status_code == 200
            events = parse_sse(r.content)
            assert "error" in events[-1] and events[-1]["error"]["code"] == "upstream_error"
            assert "".join(c["text"] for e in events[:-1] for c in e["choices"])
            assert sum(len(f.bodies) for f in servers) == 1
        else:
            # Nothing usable came: both upstreams were tried, the client gets a 502 status.
            assert_openai_error(r, 502)
            assert sum(len(f.bodies) for f in servers) == 2
        assert_openai_error(post(base), 502)  # non-streaming: a 502 either way
        for fake in servers:
            fake.mode = "ok"
        assert post(base).status_code == 200  # and the server keeps serving


def test_a_silent_upstream_times_out_instead_of_hanging():
    with fakes() as ([fake], [url]), proxy([url], timeout_s=0.5) as (base, _):
        fake.mode, fake.delay = "slow", 6.0
        started = time.monotonic()
        r = post(base)
        assert_openai_error(r, 502)
        assert time.monotonic() - started < 5.0  # the 0.5 s timeout, not the fake's 6 s
        fake.slow_pieces, fake.delay = True, 0.0
        fake.mode = "ok"
        assert post(base).status_code == 200


def test_health_is_503_while_no_upstream_is_healthy():
    with fakes(2) as (servers, urls), proxy(urls, health_interval_s=0.1) as (base, engine):
        assert httpx.get(base + "/health").status_code == 200
        for fake in servers:
            fake.healthy = False
        deadline = time.time() + 5
        while httpx.get(base + "/health").status_code != 503 and time.time() < deadline:
            time.sleep(0.05)
        h = httpx.get(base + "/health")
        assert h.status_code == 503 and "0/2 upstreams healthy" in h.json()["detail"]
        assert_openai_error(post(base), 503)
        servers[1].healthy = True
        while httpx.get(base + "/health").status_code != 200 and time.time() < deadline + 5:
            time.sleep(0.05)
        assert post(base).status_code == 200
        metrics = httpx.get(base + "/metrics").text
        assert "codecomplete_engine_upstreams_healthy 1.0" in metrics
        assert "codecomplete_engine_upstream_requests_total" in metrics


def test_a_client_that_goes_away_closes_the_upstream_stream():
    with fakes() as ([fake], [url]), proxy([url]) as (base, engine):
        fake.mode, fake.slow_pieces, fake.delay = "slow", True, 0.3

        async def read_first_and_leave():
            async with httpx.AsyncClient(timeout=10) as c:
                async with c.stream(
                    "POST", base + "/v1/completions", json={"prompt": "x", "stream": True, "deadline_ms": 0}
                ) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            return line

        assert asyncio.run(read_first_and_leave())
        deadline = time.time() + 5
        while fake.closed_early < 1 and time.time() < deadline:
            time.sleep(0.05)
        assert fake.closed_early == 1
        assert engine.metrics()["requests_cancelled_total"] == 1 and engine.metrics()["running"] == 0


def test_the_deadline_ends_at_the_last_line_boundary():
    async def run(engine: UpstreamEngine) -> tuple[str, str]:
        await engine.start()
        try:
            req = GenerationRequest("r1", SamplingParams(max_tokens=50, deadline_s=0.8), prompt="def f():\n")
            text, reason = "", None
            async for out in engine.generate(req):
                for d in out.choices:
                    text += d.text
                    reason = d.finish_reason or reason
            return text, reason
        finally:
            await engine.stop()

    with fakes(text="a = 1\nb = 2\nc = 3\nd = 4\n", pieces=8) as ([fake], [url]):
        fake.mode, fake.slow_pieces, fake.delay = "slow", True, 0.25
        engine = UpstreamEngine(UpstreamConfig(urls=[url], model=str(MODEL)))
        text, reason = asyncio.run(run(engine))
        # The fake needs 8 x 0.25 s for the whole text: the 0.8 s budget ended it early, without a
        # trailing partial line beyond what had been sent.
        assert reason == "length" and len(fake.bodies) == 1
        assert "a = 1\nb = 2\nc = 3\nd = 4\n".startswith(text) and len(text) < len(
            "a = 1\nb = 2\nc = 3\nd = 4"
        )
        assert engine.counters["requests_deadline_total"] == 1


def test_upstream_urls_from_flags_and_the_environment(monkeypatch):
    from codecomplete.cli import build_backend, build_parser, serve_settings

    for key in [k for k in __import__("os").environ if k.startswith("CODECOMPLETE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("CODECOMPLETE_UPSTREAM_URL", "http://a:8000, http://b:8000/v1")
    args = build_parser().parse_args(["serve", "--backend", "upstream"])
    s = serve_settings(args)
    assert s.upstream_url == ["http://a:8000", "http://b:8000/v1"]
    engine = build_backend(s, str(MODEL))
    assert [u.url for u in engine.upstreams] == ["http://a:8000", "http://b:8000"]
    args = build_parser().parse_args(
        ["serve", "--backend", "upstream", "--upstream-url", "http://c:1", "--upstream-url", "http://d:2"]
    )
    assert serve_settings(args).upstream_url == ["http://c:1", "http://d:2"]
    monkeypatch.delenv("CODECOMPLETE_UPSTREAM_URL")
    with pytest.raises(ValueError, match="--upstream-url"):
        build_backend(
            serve_settings(build_parser().parse_args(["serve", "--backend", "upstream"])), str(MODEL)
        )

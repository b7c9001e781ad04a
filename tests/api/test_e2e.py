"""End to end: `codecomplete serve` (the real CLI, engine and uvicorn) with a tiny random model on a
loopback port, driven by the official openai 1.x package and by replays of what Copilot, the
fauxpilot extension and the ivolution plugin send (PROTOCOLS.md).

The model is random, so tests assert what holds for any model: shapes, indices, cuts at stop
strings, that greedy answers agree across routes and streaming, counts in /metrics.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from serving import serve_subprocess

from .conftest import free_port_number
from .sse_util import assert_openai_error, parse_sse, read_like_copilot
from .test_errors import BAD_JSON_BODIES, RAW_BODIES
from .test_fuzz import _body as _random_body
from .test_fuzz import valid_body

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    # --num-threads 1: a tiny model gains nothing from more; CI machines are shared.
    # --completion-deadline-ms 0: these tests check protocol behaviour at full length; on a busy
    # machine the default budget would cut them at a load-dependent point (deadlines are tested in
    # test_editor_e2e.py and, with the default, by the real Copilot client in test_copilot_client.py).
    with serve_subprocess(
        tiny_model_dir,
        "--served-model-name",
        "tiny",
        "codegen",
        "--num-threads",
        "1",
        "--completion-deadline-ms",
        "0",
    ) as base:
        yield base


@pytest.fixture(scope="module")
def oai(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=60)


PROMPT = "def fibonacci(n):\n    "


def greedy(oai, prompt=PROMPT, **kw) -> openai.types.Completion:
    kw.setdefault("max_tokens", 12)
    return oai.completions.create(model="tiny", prompt=prompt, temperature=0, **kw)


def metric(base: str, name: str) -> float:
    text = httpx.get(base + "/metrics").text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


# --- openai 1.x ----------------------------------------------------------------------------------


def test_non_streaming(oai):
    r = greedy(oai)
    assert r.object == "text_completion" and r.id.startswith("cmpl-") and r.created > 0
    assert r.model == "tiny"
    [c] = r.choices
    assert c.index == 0 and isinstance(c.text, str) and c.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert 0 < r.usage.completion_tokens <= 12


def test_streaming_gives_the_same_greedy_text(oai):
    full = greedy(oai).choices[0].text
    chunks = list(greedy(oai, stream=True))
    assert len(chunks) >= 2, "the answer must arrive token by token, not in one piece"
    assert len({(c.id, c.created) for c in chunks}) == 1
    finishes = [c.choices[0].finish_reason for c in chunks]
    assert all(f is None for f in finishes[:-1]) and finishes[-1] in ("stop", "length")
    assert "".join(c.choices[0].text for c in chunks) == full


def test_engines_base_url(server, oai):
    engines = openai.OpenAI(base_url=server + "/v1/engines/codegen", api_key="x", max_retries=0)
    r = engines.completions.create(model="ignored-here", prompt=PROMPT, max_tokens=12, temperature=0)
    assert r.model == "codegen"
    assert r.choices[0].text == greedy(oai).choices[0].text
    chunks = list(
        engines.completions.create(model="x", prompt=PROMPT, max_tokens=12, temperature=0, stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks) == r.choices[0].text


def test_n_choices(oai):
    r = oai.completions.create(model="tiny", prompt=PROMPT, n=3, max_tokens=8, temperature=0.8, seed=1)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert all(c.finish_reason in ("stop", "length") for c in r.choices)
    assert r.usage.completion_tokens <= 3 * 8
    finishes: dict[int, list] = {0: [], 1: [], 2: []}
    for chunk in oai.completions.create(
        model="tiny", prompt=PROMPT, n=3, max_tokens=8, temperature=0.8, stream=True
    ):
        for c in chunk.choices:
            finishes[c.index].append(c.finish_reason)
    for reasons in finishes.values():  # interleaved choices, each ends exactly once, last
        assert reasons and reasons[-1] in ("stop", "length") and not any(reasons[:-1])


def test_best_of_returns_n(oai):
    r = oai.completions.create(model="tiny", prompt=PROMPT, n=2, best_of=4, max_tokens=6, seed=3)
    assert sorted(c.index for c in r.choices) == [0, 1]


def test_seed_makes_sampling_reproducible(oai):
    texts = [
        oai.completions.create(model="tiny", prompt=PROMPT, max_tokens=12, temperature=1, seed=7)
        .choices[0]
        .text
        for _ in range(2)
    ]
    assert texts[0] == texts[1]


def test_logit_bias_and_token_id_prompts(oai):
    # The text of token 300, read back through echo of a token-id prompt.
    piece = oai.completions.create(model="tiny", prompt=[300], echo=True, max_tokens=0).choices[0].text
    assert piece
    r = greedy(oai, max_tokens=3, logit_bias={"300": 100}, extra_body={"ignore_eos": True})
    assert r.choices[0].text == piece * 3


def test_stop_cuts_at_the_first_occurrence(oai):
    full = greedy(oai, max_tokens=40, extra_body={"ignore_eos": True}).choices[0].text
    assert len(full) >= 8
    stop = full[4:7]
    r = greedy(oai, max_tokens=40, stop=[stop], extra_body={"ignore_eos": True})
    assert r.choices[0].text == full[: full.index(stop)]
    assert r.choices[0].finish_reason == "stop"
    chunks = list(greedy(oai, max_tokens=40, stop=stop, stream=True, extra_body={"ignore_eos": True}))
    assert "".join(c.choices[0].text for c in chunks) == full[: full.index(stop)]


def test_echo(oai):
    r = greedy(oai, echo=True)
    assert r.choices[0].text == PROMPT + greedy(oai).choices[0].text


def test_logprobs_are_real(oai):
    r = greedy(oai, logprobs=2, max_tokens=6, extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 6
    assert all(v <= 0 for v in lp.token_logprobs)
    for value, top in zip(lp.token_logprobs, lp.top_logprobs, strict=True):
        assert 1 <= len(top) <= 2
        # greedy: the chosen token is the most likely one
        assert value == pytest.approx(max(top.values()), abs=1e-4)
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    echoed = greedy(oai, logprobs=1, echo=True, max_tokens=2).choices[0].logprobs
    assert echoed.token_logprobs[0] is None and all(v <= 0 for v in echoed.token_logprobs[1:])
    assert "".join(echoed.tokens).startswith(PROMPT[:5])


def test_suffix_reaches_the_model(oai):
    without = greedy(oai, max_tokens=4)
    with_suffix = greedy(oai, max_tokens=4, suffix="\n    return fibonacci(n - 1)\n")
    # The FIM prompt holds the suffix and the FIM tokens: more prompt tokens than the prefix alone.
    assert with_suffix.usage.prompt_tokens > without.usage.prompt_tokens + 5
    card = oai.models.retrieve("tiny")
    assert card.model_extra["fill_in_the_middle"] is True


def test_list_of_prompts(oai):
    prompts = ["import os\n", "class A:\n    "]
    r = oai.completions.create(model="tiny", prompt=prompts, n=2, max_tokens=6, temperature=0)
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    by_index = {c.index: c.text for c in r.choices}
    for p, prompt in enumerate(prompts):
        alone = greedy(oai, prompt=prompt, max_tokens=6).choices[0].text
        assert by_index[2 * p] == by_index[2 * p + 1] == alone


def test_include_usage(oai):
    chunks = list(greedy(oai, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_models_list(oai):
    assert [m.id for m in oai.models.list()] == ["tiny", "codegen"]


def test_errors_are_the_right_exceptions(oai, server):
    with pytest.raises(openai.BadRequestError) as e:
        oai.completions.create(model="tiny", prompt="a", n=0)
    assert e.value.status_code == 400 and e.value.param == "n" and e.value.code == "invalid_value"
    with pytest.raises(openai.BadRequestError) as e:
        oai.completions.create(model="tiny", prompt="a", temperature=5)
    assert e.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        oai.completions.create(model="tiny", prompt=[1, 2, 10**6])
    assert e.value.param == "prompt"
    with pytest.raises(openai.NotFoundError) as e:
        oai.models.retrieve("gpt-4")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.APIStatusError) as e:
        oai.completions.create(model="tiny", prompt="x" * (3 * 1024 * 1024))
    assert e.value.status_code == 413 and e.value.code == "request_too_large"


# --- the other clients ---------------------------------------------------------------------------

COPILOT_HEADERS = {
    "Authorization": "Bearer ghu_CopilotsOwnGitHubTokenNotOurs",
    "X-Request-Id": "6b8a4f0e-8c4e-4c7b-9d3a-2f2a1c0f9e11",
    "OpenAI-Organization": "github-copilot",
    "OpenAI-Intent": "copilot-ghost",
    "VScode-SessionId": "b1f0c1d2-0000-4000-8000-1700000000000",
    "VScode-MachineId": "0f" * 32,
    "Editor-Version": "vscode/1.85.1",
    "Editor-Plugin-Version": "copilot/1.138.0",
    "User-Agent": "GithubCopilot/1.138.0",
    "Content-Type": "application/json",
    "Accept": "*/*",
}


def copilot_body(n: int = 3) -> dict:
    return {
        "prompt": "# Path: app/main.py\nimport os\n\n\ndef main():\n",
        "suffix": "\n\nif __name__ == '__main__':\n    main()\n",
        "max_tokens": 500,
        "temperature": 0.2 if n > 1 else 0,
        "top_p": 1,
        "n": n,
        "stop": ["\ndef ", "\nclass ", "\nif ", "\n\n#"],
        "stream": True,
        "extra": {
            "language": "python",
            "next_indent": 0,
            "trim_by_indentation": True,
            "prompt_tokens": 14,
            "suffix_tokens": 11,
        },
        "nwo": "someone/app",
        "feature_flags": {},
    }


def test_copilot_replay(server):
    # overrideProxyUrl with a trailing slash: Copilot requests //v1/engines/<overrideEngine>/completions
    url = server + "/" + "/v1/engines/copilot-codex/completions"
    with httpx.Client(timeout=30) as c:  # Copilot's own timeout
        # Copilot sends no seed; one is added so that the random tiny model's sampled choices are the
        # same on every run (an unseeded draw can legitimately sample end-of-text first: empty text).
        r = c.post(url, content=json.dumps(copilot_body() | {"seed": 1234}), headers=COPILOT_HEADERS)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    choices = read_like_copilot(r.content)
    assert sorted(choices) == [0, 1, 2]
    for c in choices.values():
        assert c["finishes"] == 1 and c["finish_reason"] in ("stop", "length")
        assert c["text"], "every choice must carry text"
    parse_sse(r.content)  # and the framing is exact


def test_copilot_panel(server):
    # Ctrl+Enter: ten choices with logprobs, streamed and interleaved.
    body = copilot_body(n=10) | {"logprobs": 2}
    body["extra"]["force_indent"] = 4
    headers = COPILOT_HEADERS | {"OpenAI-Intent": "copilot-panel"}
    r = httpx.post(server + "/v1/engines/copilot-codex/completions", json=body, headers=headers, timeout=30)
    choices = read_like_copilot(r.content)
    assert sorted(choices) == list(range(10))
    assert all(c["finishes"] == 1 for c in choices.values())
    events = parse_sse(r.content)
    with_lp = [ch for e in events for ch in e["choices"] if ch["logprobs"] and ch["logprobs"]["tokens"]]
    assert with_lp and all(len(top) <= 2 for ch in with_lp for top in ch["logprobs"]["top_logprobs"])


def test_copilot_single_line(server):
    body = copilot_body(n=1) | {"stop": ["\n"], "max_tokens": 60}
    r = httpx.post(
        server + "/v1/engines/copilot-codex/completions", json=body, headers=COPILOT_HEADERS, timeout=30
    )
    [choice] = read_like_copilot(r.content).values()
    assert "\n" not in choice["text"]


def test_fauxpilot_extension(server):
    body = {
        "model": "fastertransformer",
        "prompt": "import os\n\ndef main():\n",
        "max_tokens": 200,
        "temperature": 0.1,
        "stop": ["\n"],
    }
    headers = {
        "Authorization": "Bearer dummy",
        "Content-Type": "application/json",
        "User-Agent": "OpenAI/NodeJS/3.3.0",
    }
    r = httpx.post(server + "/v1/engines/codegen/completions", json=body, headers=headers, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    text = r.json()["choices"][0]["text"]
    assert isinstance(text, str) and "\n" not in text
    body["stop"] = []  # inline completion off (fewer tokens to keep the test fast)
    body["max_tokens"] = 24
    r = httpx.post(server + "/v1/engines/codegen/completions", json=body, headers=headers, timeout=30)
    assert r.status_code == 200 and isinstance(r.json()["choices"][0]["text"], str)


def test_ivolution_plugin(server):
    text = "import numpy as np\n\n\ndef normalize(x):\n    return x / np."
    r = httpx.post(
        server + "/autocomplete",
        content=json.dumps({"text": text}),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert r.status_code == 200
    result = r.json()["result"]
    assert len(result) == 5 and all(isinstance(t, str) for t in result)
    assert httpx.post(server + "/autocomplete", json={"text": ""}).json() == {"result": []}
    assert_openai_error(httpx.post(server + "/autocomplete", json={}), 400, param="text")


def test_copilot_token_endpoint(server):
    body = httpx.get(server + "/copilot_internal/v2/token", headers={"Authorization": "token gho_x"}).json()
    assert body["token"] and body["expires_at"] > time.time()


# --- cancellation --------------------------------------------------------------------------------


def test_closed_streams_are_cancelled_and_freed(server):
    """16 streams closed after their first token (issue 2 asks for 8, issue 3 for 16): /metrics shows
    all of them cancelled, nothing left running, and at most the step in flight generated after."""
    n = 16
    names = ('completions_total{outcome="cancelled"}', "engine_tokens_generated_after_cancel_total")
    before = {k: metric(server, "codecomplete_" + k) for k in names}
    body = {"prompt": "def f():\n", "max_tokens": 200, "stream": True, "ignore_eos": True}

    async def open_read_first_close(client: httpx.AsyncClient) -> str:
        async with client.stream("POST", server + "/v1/completions", json=body) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                return line  # leaving the block closes the connection after the first token
        return ""

    async def streams() -> list[str]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as client:
            return await asyncio.gather(*(open_read_first_close(client) for _ in range(n)))

    firsts = asyncio.run(streams())
    assert all(line.startswith("data: {") for line in firsts)
    deadline = time.time() + 10
    while time.time() < deadline:
        got = {k: metric(server, "codecomplete_" + k) - before[k] for k in names}
        # The engine freed every slot: nothing left running, in requests or in batch rows.
        running = metric(server, "codecomplete_requests_running") + metric(
            server, "codecomplete_batch_sequences"
        )
        if got[names[0]] == n and running == 0:
            break
        time.sleep(0.1)
    assert (got[names[0]], running) == (n, 0)
    assert got[names[1]] <= n  # at most one token each: the step that was running when they left
    assert metric(server, "codecomplete_requests_waiting") == 0
    assert httpx.get(server + "/health").status_code == 200


# --- bad input on the real server ----------------------------------------------------------------


def test_bad_input_is_4xx_and_the_server_keeps_serving(server, oai):
    with httpx.Client(base_url=server, timeout=30) as c:
        for _what, body, status, param in BAD_JSON_BODIES:
            assert_openai_error(c.post("/v1/completions", json=body), status, param=param)
        for _what, raw, ctype, status in RAW_BODIES:
            assert_openai_error(
                c.post("/v1/completions", content=raw, headers={"content-type": ctype}), status
            )
        big = json.dumps({"prompt": "x" * (10 * 1024 * 1024)}).encode()
        assert_openai_error(
            c.post("/v1/completions", content=big, headers={"content-type": "application/json"}), 413
        )
        assert_openai_error(c.post("/v1/nothing-here", json={}), 404)
        assert c.get("/health").status_code == 200
    assert greedy(oai).choices[0].text == greedy(oai).choices[0].text


def test_tiny_temperatures_never_take_the_server_down(server):
    # Each of these once failed the sampler ("probability tensor contains inf/nan"), failed every
    # request in the same step, and after three the server answered 503 to everyone until restarted.
    body = {"prompt": "def f(x):\n    return", "max_tokens": 24, "ignore_eos": True}

    async def main():
        async with httpx.AsyncClient(base_url=server, timeout=60) as c:
            normal = asyncio.create_task(
                c.post("/v1/completions", json={**body, "temperature": 0, "stream": True})
            )
            tiny = [
                c.post("/v1/completions", json={**body, "max_tokens": 4, "temperature": t})
                for t in (1e-300, 5e-324, 1e-40, 1e-300, 1e-6)
            ]
            answers = await asyncio.gather(*tiny)
            stream = await normal
            return answers, stream

    answers, stream = asyncio.run(main())
    greedy_text = None
    for r in answers:
        assert r.status_code == 200, r.text
        text = r.json()["choices"][0]["text"]
        greedy_text = greedy_text or text
        assert text == greedy_text  # a temperature this small is greedy
    assert stream.status_code == 200
    assert all("error" not in e for e in parse_sse(stream.content))
    assert httpx.get(server + "/health").status_code == 200


def test_prompt_longer_than_the_context_keeps_its_end(oai):
    # Copilot sends max_tokens 500 whatever the model; the tiny model has 256 positions.
    r = oai.completions.create(model="tiny", prompt="x = 1\n" * 400, max_tokens=500, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens + r.usage.completion_tokens <= 256


def test_random_bodies_never_fail_on_the_real_engine(server):
    # The fuzz of test_fuzz.py, now against the real engine: accepted parameters must not make the
    # model step fail (a 500, or an error event inside a 200 stream).
    rng = random.Random(2)
    seen = set()
    with httpx.Client(base_url=server, timeout=60) as c:
        for _ in range(40):
            body = _random_body(rng)
            if isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 8:
                body["max_tokens"] = 8  # keep it fast; large values are covered elsewhere
            r = c.post("/v1/completions", json=body)
            seen.add(r.status_code)
            assert r.status_code < 500, (body, r.text[:300])
            if r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"):
                assert all("error" not in e for e in parse_sse(r.content)), body
    assert 200 in seen


def test_accepted_edge_values_work_on_the_real_engine(server):
    rng = random.Random(5)
    with httpx.Client(base_url=server, timeout=60) as c:
        for _ in range(40):
            body = valid_body(rng)
            r = c.post("/v1/completions", json=body)
            assert r.status_code == 200, (body, r.text[:300])
            if r.headers["content-type"].startswith("text/event-stream"):
                events = parse_sse(r.content)
                assert all("error" not in e for e in events), (body, events[-1])
            else:
                choices = r.json()["choices"]
                assert len(choices) == len(_prompts(body)) * body.get("n", 1)


def _prompts(body: dict) -> list:
    p = body["prompt"]
    if isinstance(p, str) or (p and isinstance(p[0], int)):
        return [p]
    return p


def test_serve_exits_with_an_error_when_the_model_cannot_load(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECOMPLETE_")}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    missing = tmp_path / "no-such-model"
    cmd = [
        sys.executable,
        "-m",
        "codecomplete",
        "serve",
        "--model",
        str(missing),
        "--port",
        str(free_port_number()),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "failed to load" in proc.stderr

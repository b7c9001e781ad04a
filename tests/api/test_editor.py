"""Editors' needs on the completion routes (api/editor.py): time budgets, single-line first, and
superseded keystrokes, over a scripted engine on the real HTTP stack."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from codecomplete.api import build_app
from codecomplete.api.editor import EditorKey, deadline_s, is_single_line, priority
from codecomplete.engine.types import ChoiceDelta, RequestOutput

from .conftest import ServerThread, free_port_number, make_client, settings
from .fake_engine import FakeEngine
from .sse_util import assert_openai_error, parse_sse

SESSION = {"VScode-SessionId": "session-1", "OpenAI-Intent": "copilot-ghost"}
FILE = "# Path: app.py\ndef main():\n    total = 0\n    for item in items:\n        total += item"


class CountingEngine(FakeEngine):
    """Records how many requests ran at once (each generate() sees the others still running)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.most_running = 0

    def generate(self, request):
        it = super().generate(request)
        self.most_running = max(self.most_running, len(self.running))
        return it


def body(prompt: str, **kw) -> dict:
    return {"prompt": prompt, "max_tokens": 40, "stream": True, "temperature": 0} | kw


async def post(client: httpx.AsyncClient, url: str, payload: dict, headers: dict) -> tuple[int, bytes]:
    r = await client.post(url, json=payload, headers=headers)
    return r.status_code, r.content


def ended(status: int, content: bytes) -> str:
    """'ok', or the error code a response ended with (before or after its 200)."""
    if status != 200:
        return json.loads(content)["error"]["code"]
    events = [line[6:] for line in content.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    last = json.loads(events[-2])
    return last["error"]["code"] if "error" in last else "ok"


def run_keystrokes(engine, prompts, headers, *, gap=0.03, **kw) -> list[str]:
    """Send `prompts` one `gap` apart (each while the previous still runs); how each one ended."""
    app = build_app(settings(**kw), engine)

    async def main() -> list[str]:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
            tasks = []
            for p in prompts:
                tasks.append(asyncio.ensure_future(post(client, "/v1/completions", body(p), headers)))
                await asyncio.sleep(gap)
            return [ended(*r) for r in await asyncio.gather(*tasks)]

    with ServerThread(app, free_port_number()) as server:
        outcomes = asyncio.run(main())
        metrics = httpx.get(server.base + "/metrics").text
    return outcomes, metrics


def keystrokes(n: int = 10) -> list[str]:
    return [FILE + "s"[: i > 0] + "x" * i for i in range(n)]


def test_ten_keystrokes_of_one_session_leave_one_running():
    engine = CountingEngine(token_delay=0.02)  # 40 tokens: 0.8 s each, the next arrives after 0.03 s
    prompts = keystrokes(10)
    outcomes, metrics = run_keystrokes(engine, prompts, SESSION)
    assert outcomes == ["superseded"] * 9 + ["ok"]
    assert engine.most_running == 1  # each older one was aborted before the newer one reached the engine
    # Each older one that reached the engine was aborted there (one superseded before its first
    # step never reaches it); the last keystroke ran to its end.
    assert engine.requests[-1].prompt == prompts[-1]
    assert sorted(engine.cancelled) == sorted(r.request_id for r in engine.requests[:-1])
    assert 'codecomplete_requests_superseded_total{channel="completions"} 9.0' in metrics
    assert 'codecomplete_completions_total{outcome="superseded"} 9.0' in metrics


def test_without_a_session_header_a_prompt_that_extends_the_last_supersedes():
    engine = CountingEngine(token_delay=0.02)
    outcomes, _ = run_keystrokes(engine, keystrokes(4), {})
    assert outcomes == ["superseded"] * 3 + ["ok"]


def test_identical_or_unrelated_prompts_from_one_address_are_not_keystrokes():
    # A batch of equal prompts (a benchmark, 16 users behind one proxy) and unrelated prompts run.
    engine = CountingEngine(token_delay=0.01)
    outcomes, _ = run_keystrokes(engine, [FILE] * 3 + ["import os\n", "x = 1\n"], {})
    assert outcomes == ["ok"] * 5 and engine.most_running == 5


def test_growing_prefixes_of_a_batch_are_not_keystrokes():
    # An evaluation sends prefixes of one file at once: lines apart, or marked as batch work.
    engine = CountingEngine(token_delay=0.01)
    lines = [FILE + "\n" + "    total = compute(item, weight)\n" * k for k in range(1, 4)]
    outcomes, _ = run_keystrokes(engine, lines, {})
    assert outcomes == ["ok"] * 3
    app = build_app(settings(), CountingEngine(token_delay=0.01))

    async def batch() -> list[str]:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
            bodies = [body(FILE + "x" * i, deadline_ms=0) for i in range(3)]
            return [
                ended(*r)
                for r in await asyncio.gather(*(post(client, "/v1/completions", b, {}) for b in bodies))
            ]

    with ServerThread(app, free_port_number()) as server:
        assert asyncio.run(batch()) == ["ok"] * 3


def test_sessions_and_channels_are_separate():
    engine = CountingEngine(token_delay=0.01)
    app = build_app(settings(), engine)
    panel = SESSION | {"OpenAI-Intent": "copilot-panel"}
    other = SESSION | {"VScode-SessionId": "session-2"}
    speculative = SESSION | {"X-Copilot-Speculative": "true"}

    async def main() -> list[str]:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
            tasks = []
            for p, h in [
                (FILE, SESSION),
                (FILE + "x", panel),
                (FILE + "xy", other),
                (FILE + "xyz", speculative),
            ]:
                tasks.append(asyncio.ensure_future(post(client, "/v1/completions", body(p), h)))
                await asyncio.sleep(0.03)
            return [ended(*r) for r in await asyncio.gather(*tasks)]

    with ServerThread(app, free_port_number()) as server:
        # ghost text, the panel, another editor, and Copilot's speculative guess all run together
        assert asyncio.run(main()) == ["ok"] * 4


def test_supersede_can_be_turned_off():
    engine = CountingEngine(token_delay=0.01)
    outcomes, _ = run_keystrokes(engine, keystrokes(3), SESSION, supersede=False)
    assert outcomes == ["ok"] * 3


def test_a_superseded_request_that_has_not_started_streaming_is_a_499_error():
    engine = CountingEngine(token_delay=0.3)  # no first output before the next keystroke
    app = build_app(settings(), engine)

    async def main():
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
            older = asyncio.ensure_future(
                client.post("/v1/completions", json=body(FILE, stream=False), headers=SESSION)
            )
            await asyncio.sleep(0.1)
            newer = await client.post("/v1/completions", json=body(FILE + "x", max_tokens=2), headers=SESSION)
            return await older, newer

    with ServerThread(app, free_port_number()) as server:
        older, newer = asyncio.run(main())
    err = assert_openai_error(older, 499)
    assert err["code"] == "superseded" and older.headers["x-should-retry"] == "false"
    assert newer.status_code == 200


# --- budgets and priorities ----------------------------------------------------------------------


def sent_params(engine: FakeEngine, payload: dict, headers: dict | None = None, **kw):
    with make_client(engine, **kw) as c:
        r = c.post(
            "/v1/completions", json={"prompt": "x = ", "max_tokens": 2} | payload, headers=headers or {}
        )
        assert r.status_code == 200, r.text
    return engine.requests[-1]


def test_every_completion_gets_the_server_budget_unless_it_states_its_own():
    assert sent_params(FakeEngine(), {}).params.deadline_s == pytest.approx(0.7)  # the default
    assert sent_params(FakeEngine(), {}, completion_deadline_ms=250).params.deadline_s == pytest.approx(0.25)
    assert sent_params(FakeEngine(), {}, completion_deadline_ms=0).params.deadline_s is None
    assert sent_params(FakeEngine(), {"deadline_ms": 5000}).params.deadline_s == pytest.approx(5.0)
    assert sent_params(FakeEngine(), {"deadline_ms": 0}).params.deadline_s is None


def test_single_line_requests_go_first_and_speculative_ones_last():
    assert sent_params(FakeEngine(), {"stop": ["\n"]}).params.priority == 0
    assert sent_params(FakeEngine(), {"stop": ["\ndef "]}).params.priority == 1
    spec = {"X-Copilot-Speculative": "true"}
    assert sent_params(FakeEngine(), {"stop": ["\n"]}, spec).params.priority == 1
    assert sent_params(FakeEngine(), {}, spec).params.priority == 2


def test_the_session_reaches_the_engine():
    assert sent_params(FakeEngine(), {}, SESSION).session_id == "session-1"
    assert sent_params(FakeEngine(), {}).session_id is None


@pytest.mark.parametrize("value", [-1, 3_600_001, "soon", 1.5])
def test_bad_budgets_are_400(value):
    with make_client() as c:
        r = c.post("/v1/completions", json={"prompt": "x", "deadline_ms": value})
    assert_openai_error(r, 400, param="deadline_ms")


def test_rules():
    assert deadline_s(700) == 0.7 and deadline_s(0) is None and deadline_s(700, 100) == 0.1
    assert is_single_line(["\n"]) and not is_single_line(["\n\n", "\ndef "])
    assert (
        priority(single_line=True)
        < priority(single_line=False)
        < priority(single_line=False, speculative=True)
    )
    a = EditorKey("c", client="1.2.3.4", prompt="abc")
    assert EditorKey("c", client="1.2.3.4", prompt="abcd").supersedes(a)
    assert not EditorKey("c", client="1.2.3.4", prompt="abc").supersedes(a)  # the same prompt
    assert not EditorKey("c", client="1.2.3.4", prompt="abc" + "x" * 25).supersedes(a)  # not typing
    assert not EditorKey("c", client="5.6.7.8", prompt="abcd").supersedes(a)  # another client
    assert not EditorKey("d", client="1.2.3.4", prompt="abcd").supersedes(a)  # another channel
    s = EditorKey("c", session_id="s", prompt="zzz")
    assert EditorKey("c", session_id="s", prompt="other").supersedes(s)  # a session: any newer request
    assert not EditorKey("c", session_id="t").supersedes(s)
    assert not EditorKey("c", session_id="s", speculative=True).supersedes(s)
    assert EditorKey("c", session_id="s").supersedes(EditorKey("c", session_id="s", speculative=True))


# --- whole lines under a budget -------------------------------------------------------------------


def scripted_lines(pieces: list[str], delay: float):
    """A script that streams `pieces` one per step, then ends with finish_reason "length"."""

    async def script(request):
        for k, piece in enumerate(pieces):
            await asyncio.sleep(delay)
            last = k == len(pieces) - 1
            yield RequestOutput(
                request.request_id,
                choices=[ChoiceDelta(0, text=piece, token_ids=[k], finish_reason="length" if last else None)],
                finished=last,
                num_prompt_tokens=3,
                num_generated_tokens=k + 1,
            )

    return script


PIECES = ["    total", " = 0\n", "    for x", " in xs:\n", "        total +", "= x\n", "        pri"]


@pytest.mark.parametrize("stream", [True, False])
def test_a_choice_the_budget_ends_stops_at_a_line_boundary(stream):
    # The engine ran out of time mid-line, after that line had been produced: the client never
    # sees the unfinished line, streamed or not.
    engine = FakeEngine(scripted_lines(PIECES, 0.05))
    with make_client(engine, completion_deadline_ms=200) as c:
        r = c.post("/v1/completions", json={"prompt": "def f(xs):\n", "max_tokens": 100, "stream": stream})
    text = (
        "".join(ch["text"] for e in parse_sse(r.content) for ch in e["choices"])
        if stream
        else r.json()["choices"][0]["text"]
    )
    assert text == "    total = 0\n    for x in xs:\n        total += x"


def test_within_the_budget_the_last_line_is_kept():
    engine = FakeEngine(scripted_lines(PIECES, 0.0))  # max_tokens reached long before the budget
    with make_client(engine, completion_deadline_ms=60_000) as c:
        r = c.post("/v1/completions", json={"prompt": "def f(xs):\n", "max_tokens": 7, "stream": True})
    assert "".join(ch["text"] for e in parse_sse(r.content) for ch in e["choices"]) == "".join(PIECES)


def test_the_first_line_streams_as_it_comes():
    engine = FakeEngine(scripted_lines(["x = ", "compute(", "1)\n", "y"], 0.0))
    with make_client(engine, completion_deadline_ms=60_000) as c:
        r = c.post("/v1/completions", json={"prompt": "p", "max_tokens": 9, "stream": True})
    pieces = [ch["text"] for e in parse_sse(r.content) for ch in e["choices"] if ch["text"]]
    assert pieces[:2] == ["x = ", "compute("] and "".join(pieces) == "x = compute(1)\ny"

"""Hostile input for any route: Hypothesis strategies and a driver that fires them at a running server.

Reusable by any route's tests (new routes included): describe the route's fields, pick a strategy,
call `fire()` against a running server (`serve_subprocess`, `ServerThread`) and it asserts, for
every request, "a 4xx in the route's own error shape, or a 200", never a 5xx or a hang, and that
/health still answers 200 afterwards (one request must never take the server down for everyone).

    from hostile import body_strategy, fire, raw_body_strategy
    fire(base, "/v1/completions", body_strategy(["prompt", "n", "temperature"], base={"max_tokens": 1}), n=100)
    fire(base, "/api/generate", ..., check_error=ollama_error_shape)

Bodies are drawn with `derandomize=True`, so a run is repeatable; the first failing request is
reported with its body (not shrunk: the server is stateful).
"""

from __future__ import annotations

import json
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

# --- values --------------------------------------------------------------------------------------

# Numbers that have broken servers: overflow on float(), int64 and uint64 edges, subnormals
# (1/5e-324 is inf), negative zero, numbers far past any limit.
EDGE_INTS = [0, 1, -1, 2, 255, 256, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1,
             10**30, -(10**30), 10**300]  # fmt: skip
EDGE_FLOATS = [0.0, -0.0, 5e-324, -5e-324, 1e-300, 1e-40, 1e-6, 0.5, 1.0, 1.0000001, 2.0, 2.0000001,
               -2.0000001, 100.0, 100.5, 1e308, -1e308, 1.7976931348623157e308]  # fmt: skip
# Text that has broken servers: lone surrogates (a JSON "\ud800" escape decodes to one and the
# tokenizer raises on it), NUL, line separators that split SSE lines, RTL marks, combining runs,
# FIM and end-of-text special tokens typed as text, very long lines.
EDGE_STRINGS = ["", " ", "\x00", "\ud800", "\udfff", "a\ud83dz", "\ud83d\ude00", "\u2028\u2029\x85",
                "\r\n\r\n", "\u202e", "e\u0301" * 50, "<|endoftext|>", "<fim_prefix>", "<fim_middle>",
                "\ufeff", "\\", '"', "{}", "NaN", "-1", "1e999", "0x10", "²", "①", "x" * 5000,
                "def f():\n    ", "\t" * 100]  # fmt: skip


def scalars() -> st.SearchStrategy:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(EDGE_INTS),
        st.integers(),
        st.sampled_from(EDGE_FLOATS),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(EDGE_STRINGS),
        st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
    )


def json_values(max_leaves: int = 12) -> st.SearchStrategy:
    """Any JSON value (surrogates included, NaN excluded: see raw_body_strategy for those)."""
    keys = st.one_of(
        st.sampled_from(["0", "1", "50256", "-1", "²", "\ud800", "", "include_usage"]), st.text(max_size=8)
    )
    return st.recursive(
        scalars(),
        lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=4)),
        max_leaves=max_leaves,
    )


def body_strategy(
    fields: Iterable[str],
    *,
    base: dict[str, Any] | None = None,
    plausible: dict[str, st.SearchStrategy] | None = None,
    clamp: dict[str, int] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects: `base`, with a few of `fields` (plus an unknown one now and then) set to hostile
    values or, from `plausible`, to values the route should accept (fields without a plausible
    strategy are always hostile).

    clamp: integer fields kept at or below a value when they are valid integers (max_tokens: a
    hostile run on a CPU should not generate thousands of tokens per request).
    """
    names = sorted(set(fields))
    plausible = plausible or {}

    @st.composite
    def build(draw) -> dict[str, Any]:
        body = dict(base or {})
        chosen = draw(
            st.lists(st.sampled_from(names + ["unknown_field"]), min_size=1, max_size=6, unique=True)
        )
        # A third of the bodies are valid (edge values that must reach the engine and work: the
        # tiny temperature that took the server down was valid), a third have one bad field
        # (the 400 must name it), a third are chaos.
        mode = draw(st.sampled_from(["valid", "one_bad", "chaos"]))
        bad = draw(st.sampled_from(chosen))
        for name in chosen:
            hostile = mode == "chaos" or (mode == "one_bad" and name == bad) or name not in plausible
            body[name] = draw(json_values() if hostile else plausible[name])
        for name, limit in (clamp or {}).items():
            value = body.get(name)
            if type(value) is int and value > limit:
                body[name] = limit
        return body

    return build()


RAW_BODIES: list[tuple[bytes, str]] = [
    (b"", "application/json"),
    (b"{", "application/json"),
    (b'{"prompt": "x", }', "application/json"),
    (b"[]", "application/json"),
    (b'"just a string"', "application/json"),
    (b"null", "application/json"),
    (b'{"temperature": NaN}', "application/json"),
    (b'{"temperature": Infinity}', "application/json"),
    (b'{"temperature": -Infinity}', "application/json"),
    (b'{"temperature": 1e999}', "application/json"),
    (b'{"max_tokens": ' + b"9" * 5000 + b"}", "application/json"),
    (b'{"prompt": "' + b"[" * 10 + b'"}' + b"]" * 10, "application/json"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json"),
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json"),
    (b'{"prompt": "\xff\xfe"}', "application/json"),
    (b'{"prompt": "\\ud800"}', "application/json"),
    (b'{"text": "\\udfff\\ud800"}', "text/plain"),
    (b"prompt=x&max_tokens=1", "application/x-www-form-urlencoded"),
    (
        b"--b\r\nContent-Disposition: form-data; name=prompt\r\n\r\nx\r\n--b--",
        "multipart/form-data; boundary=b",
    ),
    (b'{"prompt": "x", "prompt": 5}', "application/json"),
    (b"\xef\xbb\xbf{}", "application/json"),
    (b"\x00\x01\x02", "application/octet-stream"),
]


def raw_body_strategy() -> st.SearchStrategy[tuple[bytes, str]]:
    """(raw bytes, Content-Type): broken JSON, NaN literals, 5,000-digit numbers, deep nesting,
    invalid UTF-8, forms, and random bytes under random content types."""
    ctypes = st.sampled_from(["application/json", "text/plain", "", "application/x-www-form-urlencoded",
                              "multipart/form-data", "application/json; charset=latin-1"])  # fmt: skip
    return st.one_of(st.sampled_from(RAW_BODIES), st.tuples(st.binary(max_size=300), ctypes))


def path_segments() -> st.SearchStrategy[str]:
    """Path parameters (engine or model ids): slashes, dots, percent signs, surrogates, very long."""
    return st.one_of(
        st.sampled_from(
            [
                "codegen",
                "tiny",
                "a/b",
                "../..",
                "%2e%2e",
                "..",
                "x" * 3000,
                "\ud800",
                "é",
                "a b",
                "?x=1",
                "#",
                "%",
                "%00",
                "models",
                "completions",
                "0",
                "-1",
            ]
        ),  # fmt: skip
        st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=30),
    )


# --- checks --------------------------------------------------------------------------------------


def openai_error_shape(response: httpx.Response) -> None:
    """The OpenAI error body every 4xx of the OpenAI-compatible routes uses (PROTOCOLS.md)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


def _check_stream(response: httpx.Response) -> None:
    # A 200 stream ends with [DONE] (an error after the 200 is an error event, then [DONE]).
    text = response.text
    assert text.rstrip().endswith("data: [DONE]"), text[-300:]


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment.encode("utf-8", "surrogatepass"), safe="/")


# --- the driver ----------------------------------------------------------------------------------


def fire(
    base_url: str,
    route: str,
    strategy: st.SearchStrategy,
    *,
    n: int = 100,
    method: str = "POST",
    check_error: Callable[[httpx.Response], None] = openai_error_shape,
    check_ok: Callable[[httpx.Response], None] | None = None,
    allowed: Callable[[int], bool] = lambda status: status == 200 or 400 <= status < 500,
    health: str | None = "/health",
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> Counter:
    """Send `n` requests drawn from `strategy` and assert each is a 200 or a well-formed 4xx.

    strategy draws a dict (sent as ASCII JSON, so lone surrogates travel as \\ud800 escapes), a
    (bytes, content_type) pair (sent as is), a string filling `{}` in `route` (GET routes), or a
    (string, dict) pair: a path parameter and a body.
    After each request /health must answer 200 (unless health=None). Returns a Counter of statuses.
    """
    statuses: Counter = Counter()
    failures: list[AssertionError] = []
    client = httpx.Client(base_url=base_url, timeout=timeout, headers=headers)

    @hyp_settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def one(drawn: Any) -> None:
        # Failures are recorded, not raised: the server is stateful (a request that broke /health
        # breaks every later one), so Hypothesis's shrinking would replay a different failure
        # and report it as flaky. The first failure, with its body, is raised after the run.
        if failures:
            return
        try:
            send(drawn)
        except AssertionError as exc:
            failures.append(exc)

    def send(drawn: Any) -> None:
        path, content, ctype = route, None, "application/json"
        if isinstance(drawn, dict):
            content = json.dumps(drawn, ensure_ascii=True).encode("ascii")
        elif isinstance(drawn, tuple) and isinstance(drawn[0], bytes):
            content, ctype = drawn
        elif isinstance(drawn, tuple):  # (path parameter, body)
            path = route.replace("{}", _quote(drawn[0]))
            content = json.dumps(drawn[1], ensure_ascii=True).encode("ascii")
        elif isinstance(drawn, str):
            path = route.replace("{}", _quote(drawn))
        hdrs = {"content-type": ctype} if content is not None else {}
        what = f"{method} {path} {content[:300]!r}" if content is not None else f"{method} {path[:300]}"
        r = client.request(method, path, content=content, headers=hdrs)
        statuses[r.status_code] += 1
        assert allowed(r.status_code), f"{what} -> {r.status_code} {r.text[:500]}"
        if r.status_code >= 400:
            check_error(r)
        elif r.headers.get("content-type", "").startswith("text/event-stream"):
            _check_stream(r)
        elif check_ok is not None:
            check_ok(r)
        if health:
            h = client.get(health)
            assert h.status_code == 200, f"after {what}: {health} -> {h.status_code} {h.text[:300]}"

    try:
        one()
    finally:
        client.close()
    if failures:
        raise failures[0]
    return statuses

"""Strict readers of our SSE streams (PROTOCOLS.md framing) and of the OpenAI error body."""

from __future__ import annotations

import json
import re

EVENT = re.compile(rb"data: (\S[^\n\r]*)\n\n")


def parse_sse(raw: bytes) -> list[dict]:
    """Every byte must belong to a `data: <one-line JSON>\\n\\n` event; `data: [DONE]\\n\\n` last, once."""
    assert b"\r" not in raw
    events: list[bytes] = []
    pos = 0
    while pos < len(raw):
        m = EVENT.match(raw, pos)
        assert m, f"bad framing at byte {pos}: {raw[pos : pos + 80]!r}"
        events.append(m.group(1))
        pos = m.end()
    assert events and events[-1] == b"[DONE]", "the stream must end with data: [DONE]"
    assert events.count(b"[DONE]") == 1
    return [json.loads(e) for e in events[:-1]]


def read_like_copilot(raw: bytes) -> dict[int, dict]:
    """Copilot's reader: split on \\n, drop the first five characters, JSON-parse, track
    finish_reason per index, ignore what comes after a choice's first truthy finish_reason."""
    choices: dict[int, dict] = {}
    ids = set()
    for line in raw.decode("utf-8").split("\n"):
        if not line:
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            break
        obj = json.loads(payload)  # every line must parse
        assert "error" not in obj, obj
        ids.add((obj["id"], obj["created"]))
        for ch in obj["choices"]:
            c = choices.setdefault(ch["index"], {"text": "", "finish_reason": None, "finishes": 0})
            if c["finish_reason"]:
                continue
            c["text"] += ch["text"]
            if ch.get("finish_reason"):
                c["finish_reason"] = ch["finish_reason"]
                c["finishes"] += 1
    assert len(ids) == 1, "id and created must be the same in every chunk"
    return choices


def assert_openai_error(response, status: int | None = None, param: str | None = "__any__") -> dict:
    if status is None:
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
    else:
        assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    if param != "__any__":
        assert err["param"] == param, err
    return err

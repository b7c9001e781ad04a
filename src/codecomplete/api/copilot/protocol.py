"""What Copilot's language server asks of GitHub's servers besides completions, answered locally.

Read from `@github/copilot-language-server` 1.539.0 (dist/main.js) and seen against it offline
(shared/PROTOCOLS.md, "GitHub Copilot's language server, offline"):

- `GET /copilot_internal/v2/token`: the token envelope, validated strictly by the client
  (`token`, `expires_at`, `refresh_in` required; `endpoints` {api, origin-tracker, proxy, telemetry}
  or it falls back to GitHub's hosts; `telemetry` "enabled"|"disabled"), on a response that carries
  an `x-github-request-id` header (without it: "HTTP 200 response does not appear to originate from
  GitHub");
- `GET /copilot_internal/user`: the user's plan (optional fields only);
- `GET /telemetry`: the experiment ("ExP") config; the client does `body.Configs.find(c => c.Id ===
  "vscode")`, so `Configs` must be a list (else "Cannot read properties of undefined (reading
  'find')" on every completion);
- `POST /telemetry`: Application Insights envelopes (a JSON array, one object, or one object per
  line; gzip allowed), answered in the Application Insights track-response shape.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

TOKEN_LIFETIME_S = 3600
# The client reads the token as `key=value;...` pairs; none of ours turns anything on.
TOKEN = "tid=codecomplete-local;sku=codecomplete"

MAX_TELEMETRY_ITEMS = 1000
# Copilot's inline completion events: "<prefix>/ghostText.shown", ".accepted", ".rejected".
EVENT = re.compile(r"(?:^|[/.])ghostText\.(shown|accepted|rejected)$")
LANGUAGE = re.compile(r"[a-z0-9][a-z0-9+#._-]{0,31}")


def endpoints(base_url: str) -> dict[str, str]:
    base = base_url.rstrip("/")
    return {"api": base, "proxy": base, "telemetry": base, "origin-tracker": base}


def token_envelope(base_url: str, now: int, token: str | None = None) -> dict[str, Any]:
    return {
        "token": token or TOKEN,
        "expires_at": now + TOKEN_LIFETIME_S,
        "refresh_in": TOKEN_LIFETIME_S // 2,
        "sku": "codecomplete",
        "individual": True,
        "telemetry": "enabled",  # so the client reports shown/accepted/rejected to us (/metrics)
        "public_suggestions": "enabled",
        "code_quote_enabled": False,
        "copilotignore_enabled": False,
        "chat_enabled": False,
        "endpoints": endpoints(base_url),
    }


def user_info(base_url: str) -> dict[str, Any]:
    return {
        "login": "codecomplete",
        "copilot_plan": "individual",
        "access_type_sku": "codecomplete",
        "chat_enabled": False,
        "organization_login_list": [],
        "endpoints": endpoints(base_url),
    }


def experiment_config() -> dict[str, Any]:
    """No experiments: the client's defaults everywhere (the shape of its own ExpConfigFetcher)."""
    return {
        "Features": [],
        "Flights": {},
        "Configs": [{"Id": "vscode", "Parameters": {}}],
        "ParameterGroups": [],
        "AssignmentContext": "",
    }


class TelemetryError(ValueError):
    """A body the sink cannot read (answered 400 in the Application Insights shape)."""


@dataclass
class CompletionEvent:
    event: str  # shown | accepted | rejected
    language: str


def decode_body(raw: bytes, content_encoding: str | None, max_bytes: int) -> list[Any]:
    """The envelopes of one POST. gzip and deflate bodies are inflated up to `max_bytes` (a small
    compressed body must not become gigabytes: that would be a zip bomb, not telemetry)."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("gzip", "x-gzip") or (not encoding and raw[:2] == b"\x1f\x8b"):
        raw = _inflate(raw, 16 + zlib.MAX_WBITS, max_bytes)
    elif encoding == "deflate":
        raw = _inflate(raw, zlib.MAX_WBITS, max_bytes)
    elif encoding not in ("", "identity"):
        raise TelemetryError(f"unsupported Content-Encoding {encoding[:40]!r}")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise TelemetryError("the body is not valid UTF-8") from None
    if not text:
        raise TelemetryError("the body is empty")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        try:  # newline-delimited envelopes
            value = [json.loads(line) for line in text.splitlines() if line.strip()]
        except (ValueError, RecursionError):
            raise TelemetryError("the body is not JSON (an array of envelopes or one per line)") from None
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_TELEMETRY_ITEMS:
        raise TelemetryError(f"at most {MAX_TELEMETRY_ITEMS} envelopes per request")
    return items


def _inflate(raw: bytes, wbits: int, max_bytes: int) -> bytes:
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(raw, max_bytes + 1)
    except (zlib.error, gzip.BadGzipFile):
        raise TelemetryError("the compressed body is corrupt") from None
    if len(out) > max_bytes or d.unconsumed_tail:
        raise TelemetryError(f"the body inflates past {max_bytes} bytes (--max-body-bytes)")
    return out


def completion_event(item: Any) -> CompletionEvent | None:
    """The inline-completion event in one envelope, or None for any other telemetry."""
    if not isinstance(item, dict):
        return None
    data = item.get("data")
    base = data.get("baseData") if isinstance(data, dict) else None
    if not isinstance(base, dict):
        base = item
    name = base.get("name")
    if not isinstance(name, str):
        return None
    m = EVENT.search(name)
    if m is None:
        return None
    props = base.get("properties")
    props = props if isinstance(props, dict) else {}
    return CompletionEvent(event=m.group(1), language=language_label(props.get("languageId")))


def language_label(value: Any) -> str:
    """A bounded label value: a client sends what it likes here."""
    if isinstance(value, str):
        v = value.strip().lower()
        if LANGUAGE.fullmatch(v):
            return v
    return "unknown"

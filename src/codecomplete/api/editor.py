"""What editor clients need from every completion route: a time budget, a priority, and superseding.

An editor sends a request on every keystroke and gives up on an answer after about a second; a
500-token multi-line completion on a CPU takes far longer. So (issue 13):

- every completion gets a **time budget** (`deadline_s`): the client's own where its protocol has one
  (llama.cpp's `t_max_predict_ms`, our `deadline_ms` extra), else the server's
  `--completion-deadline-ms`; the engine then ends each choice at its last line boundary with
  finish_reason "length";
- **interactive single-line requests go first** (`priority`): a completion that ends at the first
  newline is what the editor is waiting for; a multi-line block or a speculative request can wait;
- a newer request from the same editor session **supersedes** an older one still running
  (`SupersedeRegistry`): the older one is aborted in the engine at once (its KV stays in the prefix
  cache for the newer prompt) and its response ends with a `superseded` error.

Torch-free and protocol-free, so every route uses the same rules. A route does:

    key = EditorKey.of(raw, channel="infill", prompt=prefix, session_id=None)
    ticket = await raw.app.state.supersede.begin(key, [r.request_id for r in gen_requests],
                                                 on_superseded=stream.supersede)
    try:
        ...  # stream or collect; a superseded request's stream yields a Superseded exception
    finally:
        ticket.close()  # when the response has ended (in a streaming generator's `finally`)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from starlette.requests import Request

from codecomplete.engine.client import EngineClient

log = logging.getLogger("codecomplete.api")

# Scheduling order among waiting requests (SamplingParams.priority: lower first).
PRIORITY_SINGLE_LINE = 0
PRIORITY_MULTI_LINE = 1
PRIORITY_SPECULATIVE = 1  # added: a guess at the next completion waits for what the user waits for

# engine.abort() again after these delays: an abort that reaches our engine while it is moving the
# request from its inbox into its scheduler is lost (engine/core.py `_drain_inbox` registers the
# request for abort() only after preparing its prompt); a repeat finds it. Aborting a request that
# has ended is a no-op.
ABORT_RETRIES_S = (0.05, 0.25)

# The most a prompt grows between two keystroke requests that are both still running (a few typed
# characters, an accepted word); more is not typing.
MAX_KEYSTROKE_CHARS = 24

# Copilot's editor-session header (sent by VS Code, the language server, copilot.vim, ...).
SESSION_HEADERS = ("vscode-sessionid", "editor-session-id")


def deadline_s(server_ms: int, client_ms: float | None = None) -> float | None:
    """The budget of one completion in seconds, or None for none.

    `client_ms`: the client's own budget where its protocol has one; it wins over the server's
    default (a client that states a budget knows what it waits for); <= 0 means none. `server_ms`:
    --completion-deadline-ms, 0 = none.
    """
    if client_ms is not None:
        return client_ms / 1000.0 if client_ms > 0 else None
    return server_ms / 1000.0 if server_ms > 0 else None


def is_single_line(stop: Iterable[str]) -> bool:
    """A completion that ends at the first line break (Copilot's single-line ghost text, the
    fauxpilot extension's `stop: ["\\n"]`, llama.vim's n_predict line mode)."""
    return any(s in ("\n", "\r\n") for s in stop)


def priority(*, single_line: bool, speculative: bool = False) -> int:
    """Lower is admitted first: interactive single-line, then multi-line, then speculative."""
    base = PRIORITY_SINGLE_LINE if single_line else PRIORITY_MULTI_LINE
    return base + (PRIORITY_SPECULATIVE if speculative else 0)


def is_speculative(raw: Request) -> bool:
    """Copilot's guess at the completion after the one it shows (`X-Copilot-Speculative: true`)."""
    return raw.headers.get("x-copilot-speculative", "").strip().lower() == "true"


class Superseded(Exception):
    """A newer request from the same editor session replaced this one."""

    def __init__(self) -> None:
        super().__init__("superseded by a newer request from the same editor session")


@dataclass(frozen=True)
class EditorKey:
    """Who a request comes from, as far as superseding is concerned.

    channel: requests of different channels never supersede each other (a route and the kind of
      request: Copilot's ghost text vs its panel);
    session_id: the editor session the client names (Copilot's VScode-SessionId); when set, any
      newer request of the same session and channel supersedes;
    client: the client's address and User-Agent (an editor and a script on one machine are two
      clients), used when there is no session id: then a newer request supersedes only when its
      `prompt` strictly extends the older one's by at most MAX_KEYSTROKE_CHARS characters (the
      user typed on). Identical prompts never supersede: N clients behind one address sending the
      same prompt are a batch, not keystrokes; nor do prompts that grow by whole lines or more (an
      evaluation sending growing prefixes of one file at once). A request without a `prompt`
      (a route passes None for batch work, e.g. `deadline_ms: 0`) never takes part;
    speculative: a guess the client makes ahead of the user (Copilot's completion after the one it
      shows, sent while that one may still stream its other choices): it supersedes only older
      speculative requests, and any newer real request supersedes it.
    """

    channel: str
    session_id: str | None = None
    client: str | None = None
    prompt: str | None = field(default=None, repr=False, compare=False)
    speculative: bool = False

    @classmethod
    def of(
        cls,
        raw: Request,
        channel: str,
        prompt: str | None,
        session_id: str | None = None,
        speculative: bool | None = None,
    ) -> EditorKey:
        """From a request: the session id given (the protocol's own), else Copilot's session header."""
        if session_id is None:
            for name in SESSION_HEADERS:
                value = raw.headers.get(name, "").strip()
                if value:
                    session_id = value[:256]
                    break
        host = raw.client.host if raw.client is not None else None
        client = None if host is None else f"{host} {raw.headers.get('user-agent', '')[:200]}"
        if speculative is None:
            speculative = is_speculative(raw)
        return cls(
            channel=channel,
            session_id=session_id or None,
            client=client,
            prompt=prompt,
            speculative=speculative,
        )

    def supersedes(self, older: EditorKey) -> bool:
        if self.channel != older.channel or (self.speculative and not older.speculative):
            return False
        if self.session_id is not None or older.session_id is not None:
            return self.session_id == older.session_id
        if self.client is None or self.client != older.client:
            return False
        new, old = self.prompt, older.prompt
        return (
            new is not None
            and old is not None
            and len(old) < len(new) <= len(old) + MAX_KEYSTROKE_CHARS
            and new.startswith(old)
        )


class Ticket:
    """One request in the registry. `close()` when its response has ended (idempotent)."""

    def __init__(
        self,
        registry: SupersedeRegistry,
        key: EditorKey,
        request_ids: list[str],
        on_superseded: Callable[[], None] | None,
    ):
        self.registry = registry
        self.key = key
        self.request_ids = list(request_ids)
        self.on_superseded = on_superseded
        self.superseded = False
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.registry._live.pop(id(self), None)


class SupersedeRegistry:
    """The requests in flight, by editor session; `begin` cancels what the new request replaces.

    Single event loop, no locks: `begin` and `close` run on the server's loop.
    """

    def __init__(
        self,
        engine: EngineClient,
        *,
        enabled: bool = True,
        on_superseded: Callable[[EditorKey], None] | None = None,
    ):
        self.engine = engine
        self.enabled = enabled
        self._on_superseded = on_superseded  # metrics hook
        self._live: dict[int, Ticket] = {}

    def __len__(self) -> int:
        return len(self._live)

    async def begin(
        self,
        key: EditorKey,
        request_ids: list[str],
        on_superseded: Callable[[], None] | None = None,
    ) -> Ticket:
        """Register a request (call it before submitting it to the engine, so the older one is
        aborted first and the two never run together). `on_superseded` is called if a later request
        replaces this one: it should end this request's response (OutputStream.supersede does)."""
        ticket = Ticket(self, key, request_ids, on_superseded)
        if not self.enabled:
            return ticket
        older = [t for t in self._live.values() if key.supersedes(t.key)]
        for t in older:
            await self._cancel(t)
        self._live[id(ticket)] = ticket
        return ticket

    async def _abort(self, request_ids: list[str], quiet: bool = False) -> None:
        for request_id in request_ids:
            try:
                await self.engine.abort(request_id)
            except Exception:  # an engine that cannot abort must not fail the newer request
                if not quiet:
                    log.exception("aborting superseded request %s failed", request_id)

    async def _cancel(self, ticket: Ticket) -> None:
        ticket.superseded = True
        ticket.close()
        await self._abort(ticket.request_ids)
        loop = asyncio.get_running_loop()
        for delay in ABORT_RETRIES_S:
            loop.call_later(
                delay, lambda ids=ticket.request_ids: asyncio.ensure_future(self._abort(ids, quiet=True))
            )
        if ticket.on_superseded is not None:
            ticket.on_superseded()
        if self._on_superseded is not None:
            self._on_superseded(ticket.key)

"""Graceful shutdown: on SIGTERM stop admitting, let running streams finish up to --shutdown-timeout,
then end them with an error event and exit.

- `Drain` is the app's shutdown state (`app.state.drain`). `begin()` starts draining: from then on
  /health and every generation route answer 503 + Retry-After (a load balancer moves on; the
  openai clients retry 503), while admitted requests keep generating.
- `DrainingEngine` wraps the engine client the app serves, so every route (present and future)
  gets both halves without knowing about shutdown: `health()` says "shutting down", `generate()`
  refuses new requests, and when the timeout expires every stream still running raises
  `ShuttingDown`; the serving code turns that into an error event + [DONE] (streaming) or a 503,
  as it does for any engine error.
- `GracefulServer` is uvicorn's server with the signal hooked: the first SIGTERM/SIGINT begins the
  drain, and uvicorn's own graceful-shutdown timeout is set a little past ours as a backstop, so a
  client that stalls mid-upload (or never reads its stream) cannot keep the process alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from codecomplete.engine.client import EngineClient
from codecomplete.engine.types import EngineHealth, GenerationRequest, RequestOutput

log = logging.getLogger("codecomplete.api")

# Seconds uvicorn waits past --shutdown-timeout before it cancels whatever is still running: time
# for the streams we ended to send their last event.
BACKSTOP_S = 2.0


class ShuttingDown(Exception):
    """The server is stopping: a new request is refused, or a running one was cut at the timeout."""

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message)
        self.retry_after = retry_after


class Drain:
    def __init__(self, timeout_s: float = 30.0):
        self.timeout_s = timeout_s
        self.started_at: float | None = None
        self._expired: asyncio.Event | None = None

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    @property
    def expired(self) -> asyncio.Event:
        if self._expired is None:
            self._expired = asyncio.Event()
        return self._expired

    def begin(self, timeout_s: float | None = None) -> None:
        """Start draining (idempotent). Call on the event loop's thread."""
        if self.draining:
            return
        if timeout_s is not None:
            self.timeout_s = timeout_s
        self.started_at = time.monotonic()
        log.info("shutting down: no new requests; running ones may finish within %.0f s", self.timeout_s)
        asyncio.get_running_loop().call_later(self.timeout_s, self._expire)

    def _expire(self) -> None:
        log.warning("shutdown timeout (%.0f s) reached: ending the streams still running", self.timeout_s)
        self.expired.set()


class DrainingEngine(EngineClient):
    """The engine client the app serves: the real one, plus the drain."""

    def __init__(self, inner: EngineClient, drain: Drain):
        self.inner = inner
        self.drain = drain

    def __getattr__(self, name: str) -> Any:  # model_info, unsupported, backend-specific extras
        return getattr(self.inner, name)

    @property
    def model_info(self):  # type: ignore[override]
        return self.inner.model_info

    @property
    def unsupported(self) -> frozenset[str]:  # type: ignore[override]
        return self.inner.unsupported

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def abort(self, request_id: str) -> None:
        await self.inner.abort(request_id)

    def metrics(self) -> dict[str, float]:
        return self.inner.metrics()

    def health(self) -> EngineHealth:
        h = self.inner.health()
        if self.drain.draining:
            return EngineHealth(
                ok=False, detail="the server is shutting down", queue_depth=h.queue_depth, running=h.running
            )
        return h

    def generate(self, request: GenerationRequest) -> AsyncIterator[RequestOutput]:
        if self.drain.draining:
            raise ShuttingDown("the server is shutting down; retry on another instance or later")
        return self._guard(self.inner.generate(request))

    async def _guard(self, outputs: AsyncIterator[RequestOutput]) -> AsyncIterator[RequestOutput]:
        expired = asyncio.ensure_future(self.drain.expired.wait())
        nxt: asyncio.Future | None = None
        try:
            while True:
                nxt = asyncio.ensure_future(outputs.__anext__())
                await asyncio.wait({nxt, expired}, return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():
                    nxt.cancel()  # lands in the engine's iterator, which aborts the request
                    await asyncio.gather(nxt, return_exceptions=True)
                    raise ShuttingDown(
                        f"the server shut down before this request finished (--shutdown-timeout "
                        f"{self.drain.timeout_s:g} s)"
                    )
                try:
                    out = nxt.result()
                except StopAsyncIteration:
                    return
                yield out
                if out.finished:
                    return
        finally:
            expired.cancel()
            # Our reader went away (cancelled) while the engine's iterator was producing: stop that
            # first (the cancellation lands in the engine's iterator, which aborts its request and
            # closes an upstream stream), else aclose() finds the generator still running.
            if nxt is not None and not nxt.done():
                nxt.cancel()
                await asyncio.gather(nxt, return_exceptions=True)
            aclose = getattr(outputs, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(RuntimeError):
                    await aclose()


def graceful_server(config: Any, drain: Drain):
    """A uvicorn.Server whose first SIGTERM/SIGINT begins `drain` (and a second SIGINT forces exit)."""
    import uvicorn

    config.timeout_graceful_shutdown = drain.timeout_s + BACKSTOP_S

    class GracefulServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            loop = getattr(self, "_loop", None)
            if loop is not None and not drain.draining:
                loop.call_soon_threadsafe(drain.begin)
            super().handle_exit(sig, frame)

        async def serve(self, sockets=None) -> None:
            self._loop = asyncio.get_running_loop()
            await super().serve(sockets)

    return GracefulServer(config)

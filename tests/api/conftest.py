"""Fixtures for the API tests: an app over a FakeEngine, in-process or on a real loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from codecomplete.api import build_app
from codecomplete.settings import ServerSettings

from .fake_engine import FakeEngine


def settings(**kw) -> ServerSettings:
    # Explicit values: the developer's CODECOMPLETE_* variables must not leak into the tests.
    kw.setdefault("api_key", None)
    return ServerSettings(**kw)


@pytest.fixture
def fake() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def client(fake) -> Iterator[TestClient]:
    with TestClient(build_app(settings(), fake), raise_server_exceptions=False) as c:
        yield c


def make_client(engine: FakeEngine | None = None, **kw) -> TestClient:
    return TestClient(build_app(settings(**kw), engine or FakeEngine()), raise_server_exceptions=False)


class ServerThread:
    """uvicorn on a free loopback port in a thread: the real HTTP stack, the real disconnects."""

    def __init__(self, app, port: int):
        import uvicorn

        self.config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.base = f"http://127.0.0.1:{port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def free_port_number() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

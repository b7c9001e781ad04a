"""SIGTERM with streams in flight (the real `codecomplete serve` in a subprocess): admitted streams
finish or end with an error event + [DONE], new requests are refused, a stalled upload does not
hold the process, and it exits within --shutdown-timeout + 5 s. Plus the drain itself, in-process."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from codecomplete.api import build_app

from .conftest import ServerThread, free_port_number, settings
from .fake_engine import FakeEngine
from .sse_util import assert_openai_error, parse_sse

SRC = Path(__file__).resolve().parents[2] / "src"
TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def long_context_model(tiny_model_factory, tmp_path_factory) -> Path:
    # The session's tiny llama (rotary positions) given 4,096 positions: a stream of a few thousand
    # tokens is still running when the timeout expires.
    out = tmp_path_factory.mktemp("long") / "tiny-llama"
    shutil.copytree(tiny_model_factory("llama"), out)
    for name, key in (
        ("config.json", "max_position_embeddings"),
        ("tokenizer_config.json", "model_max_length"),
    ):
        cfg = json.loads((out / name).read_text())
        cfg[key] = 4096
        (out / name).write_text(json.dumps(cfg))
    return out


def start_server(model: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port_number()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECOMPLETE_")}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "codecomplete", "serve", "--model", str(model), "--port", str(port)]
    cmd += ["--device", "cpu", "--log-level", "warning", "--num-threads", "1", *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        assert time.time() < deadline, "server did not start"
        time.sleep(0.25)


class Stream(threading.Thread):
    def __init__(self, base: str, max_tokens: int):
        super().__init__(daemon=True)
        self.base, self.max_tokens = base, max_tokens
        self.first = threading.Event()
        self.raw = b""
        self.error: BaseException | None = None

    def run(self) -> None:
        body = {
            "prompt": "def f(x):\n",
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "stream": True,
            "ignore_eos": True,
            "deadline_ms": 0,
        }  # fmt: skip  (no time budget: long ones must run)
        try:
            with httpx.stream("POST", self.base + "/v1/completions", json=body, timeout=60) as r:
                assert r.status_code == 200, r.read()
                for chunk in r.iter_raw():
                    self.raw += chunk
                    self.first.set()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.first.set()


@pytest.mark.slow
def test_sigterm_with_8_streams_in_flight(long_context_model):
    proc, base = start_server(
        long_context_model, "--shutdown-timeout", str(TIMEOUT_S), "--max-batch-size", "8"
    )
    try:
        short = [Stream(base, 24) for _ in range(4)]
        long = [Stream(base, 4000) for _ in range(4)]
        for s in short + long:
            s.start()
        for s in short + long:
            assert s.first.wait(60)
        # A client that sends half its body and stalls.
        stalled = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])))
        stalled.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 1000\r\n\r\n{\"prompt\": \"x")  # fmt: skip
        time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        try:  # new requests: refused (the port is closed) or 503 + Retry-After
            r = httpx.post(base + "/v1/completions", json={"prompt": "x", "max_tokens": 1}, timeout=5)
            assert r.status_code == 503 and r.headers["retry-after"], r.text
        except httpx.TransportError:
            pass
        proc.wait(TIMEOUT_S + 5)
        elapsed = time.monotonic() - sent
        for s in short + long:
            s.join(5)
            assert s.error is None, s.error
            events = parse_sse(s.raw)  # every stream ends with [DONE]
            errors = [e for e in events if "error" in e]
            if errors:  # ... after an error event naming the shutdown, and nothing after it
                assert events[-1] is errors[0] and errors[0]["error"]["code"] == "shutting_down", events[-2:]
            else:  # ... or after its last tokens
                assert events[-1]["choices"][-1]["finish_reason"] == "length"
        assert all("error" not in e for s in short for e in parse_sse(s.raw)), "short streams finish"
        assert all(any("error" in e for e in parse_sse(s.raw)) for s in long), "long ones are cut"
        assert elapsed < TIMEOUT_S + 5
        stalled.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- the drain in-process (fast) -----------------------------------------------------------------


def test_draining_refuses_new_requests_and_cuts_streams_at_the_timeout():
    engine = FakeEngine(token_delay=0.05)
    app = build_app(settings(shutdown_timeout=0.5), engine)
    with ServerThread(app, free_port_number()) as server:
        base = server.base
        s = Stream(base, 200)  # 10 s of tokens
        s.start()
        assert s.first.wait(10)
        # begin() runs on the server's loop, as the signal handler arranges.
        _server_loop(server).call_soon_threadsafe(app.state.drain.begin)
        time.sleep(0.1)
        h = httpx.get(base + "/health")
        assert h.status_code == 503 and h.json()["detail"] == "the server is shutting down"
        r = httpx.post(base + "/v1/completions", json={"prompt": "x", "max_tokens": 1})
        err = assert_openai_error(r, 503)
        assert r.headers["retry-after"] and err["type"] == "server_error"
        r = httpx.post(base + "/autocomplete", json={"text": "x"})
        assert_openai_error(r, 503)
        s.join(5)
        events = parse_sse(s.raw)
        assert events[-1]["error"]["code"] == "shutting_down"
        assert len(events) > 2  # it had been streaming tokens
    assert engine.running == set()  # the engine request was aborted, not left generating


def _server_loop(server: ServerThread) -> asyncio.AbstractEventLoop:
    # uvicorn runs the app in the thread's loop; its servers hold a reference to it.
    return server.server.servers[0].get_loop()


def test_a_dead_engine_process_stops_the_server_with_an_error(long_context_model):
    """The engine runs in its own process (`--engine-process`); when it is killed (the kernel's OOM
    killer, an operator), the open stream ends with an error event and the server exits non-zero, so
    that Docker's restart policy or systemd starts it again instead of a server that can only fail."""
    import psutil

    proc, base = start_server(long_context_model, "--engine-process", "on")
    try:
        engines = [c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]
        assert len(engines) == 1, "the engine runs in a child process"
        s = Stream(base, 4000)
        s.start()
        assert s.first.wait(60)
        engines[0].kill()
        proc.wait(30)
        assert proc.returncode == 1
        s.join(10)
        events = parse_sse(s.raw)
        assert "error" in events[-1] and "engine process exited" in events[-1]["error"]["message"]
        assert "supervisor restarts the server" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

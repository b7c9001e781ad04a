"""Drive the real GitHub Copilot language server against the real server, offline.

Run by tests/api/test_copilot_client.py inside a loopback-only network namespace
(`unshare -n`), so neither process can reach anything but the other:

    unshare -n sh -c 'ip link set lo up && python tests/api/copilot_lsp.py LS_JS MODEL OUT.json'

It starts the server in this process (the real app over the real engine on uvicorn, as
`codecomplete serve` builds it) with an ASGI recorder in front that keeps the bytes of every
response (the test compares what Copilot shows with what we streamed), then starts
`node <LS_JS> --stdio` with GH_COPILOT_TOKEN / GH_COPILOT_API_URL / GH_COPILOT_SERVER_URL pointing
at the server, and speaks LSP to it: initialize, didOpen, textDocument/inlineCompletion, then
didShowCompletion and the accept command of the first item. It writes what it saw to OUT.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

DOC = (
    "def fibonacci(n):\n"
    '    """Return the n-th Fibonacci number."""\n'
    "    if n < 2:\n"
    "        return n\n"
    "    return fibonacci(n - 1) + fibonacci(n - 2)\n"
    "\n"
    "\n"
    "def factorial(n):\n"
    "    "
)


class Recorder:
    """ASGI wrapper: method, path, status, request body and response body of every request."""

    def __init__(self, app):
        self.app = app
        self.exchanges: list[dict] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ex = {"method": scope["method"], "path": scope["path"], "status": None, "request": b"", "body": b""}
        ex["headers"] = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.exchanges.append(ex)

        async def recv():
            message = await receive()
            if message["type"] == "http.request":
                ex["request"] += message.get("body", b"")
            return message

        async def snd(message):
            if message["type"] == "http.response.start":
                ex["status"] = message["status"]
                ex["response_headers"] = {
                    k.decode("latin-1"): v.decode("latin-1") for k, v in message.get("headers", [])
                }
            elif message["type"] == "http.response.body":
                ex["body"] += message.get("body", b"")
            await send(message)

        await self.app(scope, recv, snd)


def start_server(model: str, port: int) -> tuple[Recorder, object, threading.Thread]:
    import uvicorn

    from codecomplete.api import build_app
    from codecomplete.engine import EngineConfig, build_engine
    from codecomplete.settings import ServerSettings

    settings = ServerSettings(api_key=None, port=port, num_threads=1)
    config = EngineConfig(model=model, served_names=[], device="cpu", num_threads=1)
    recorder = Recorder(build_app(settings, build_engine(config)))
    server = uvicorn.Server(uvicorn.Config(recorder, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.time() + 120
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise SystemExit("the server did not start")
        time.sleep(0.1)
    return recorder, server, thread


class LSP:
    """A minimal LSP client over the language server's stdio (Content-Length framing)."""

    def __init__(self, cmd: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.next_id = 0
        self.responses: dict[int, dict] = {}
        self.notifications: list[dict] = []
        self.lock = threading.Condition()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.decode("utf-8", "replace"))

    def _write(self, msg: dict) -> None:
        data = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.proc.stdin.flush()

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                line = line.strip()
                if not line:
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            msg = json.loads(out.read(length))
            if "method" in msg and "id" in msg:  # a request from the server: answer it
                self._write({"jsonrpc": "2.0", "id": msg["id"], "result": self._answer(msg)})
            with self.lock:
                if "method" in msg:
                    self.notifications.append(msg)
                else:
                    self.responses[msg["id"]] = msg
                self.lock.notify_all()

    @staticmethod
    def _answer(msg: dict):
        if msg["method"] == "workspace/configuration":
            return [None for _ in msg.get("params", {}).get("items", [])]
        return None

    def notify(self, method: str, params: dict) -> None:
        self._write({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: dict, timeout: float = 60) -> dict:
        self.next_id += 1
        rid = self.next_id
        self._write({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        with self.lock:
            if not self.lock.wait_for(lambda: rid in self.responses, timeout):
                raise TimeoutError(
                    f"{method}: no answer in {timeout} s; stderr: {''.join(self.stderr)[-2000:]}"
                )
            return self.responses.pop(rid)

    def close(self) -> None:
        if self.proc.poll() is not None:
            return
        try:
            self.request("shutdown", {}, timeout=10)
            self.notify("exit", {})
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def completion_items(lsp: LSP, uri: str, line: int, character: int, tries: int = 5) -> list[dict]:
    """The inline completions at a position (asked again while the client is still warming up)."""
    items: list[dict] = []
    for _ in range(tries):
        r = lsp.request(
            "textDocument/inlineCompletion",
            {
                "textDocument": {"uri": uri, "version": 1},
                "position": {"line": line, "character": character},
                "context": {"triggerKind": 1},  # invoked
                "formattingOptions": {"tabSize": 4, "insertSpaces": True},
            },
        )
        result = r.get("result") or {}
        items = result.get("items", []) if isinstance(result, dict) else result
        if items:
            break
        time.sleep(1)
    return items


def main(ls_js: str, model: str, out_path: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recorder, server, _ = start_server(model, port)
    base = f"http://127.0.0.1:{port}"
    home = tempfile.mkdtemp(prefix="copilot-home-")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "XDG_CONFIG_HOME": home,
        "XDG_STATE_HOME": home,
        "GH_COPILOT_TOKEN": "codecomplete",
        "GH_COPILOT_API_URL": base,
        "GH_COPILOT_SERVER_URL": base,
    }
    workdir = Path(home) / "project"
    workdir.mkdir()
    (workdir / "fib.py").write_text(DOC)
    uri = (workdir / "fib.py").as_uri()
    t0 = time.time()
    lsp = LSP(["node", ls_js, "--stdio"], env)
    result: dict = {"base": base}
    try:
        lsp.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": workdir.as_uri(),
                "workspaceFolders": [{"uri": workdir.as_uri(), "name": "project"}],
                "capabilities": {"workspace": {"workspaceFolders": True}},
                "initializationOptions": {
                    "editorInfo": {"name": "codecomplete-test", "version": "1.0.0"},
                    "editorPluginInfo": {"name": "codecomplete-test", "version": "1.0.0"},
                },
            },
        )
        lsp.notify("initialized", {})
        lsp.notify("workspace/didChangeConfiguration", {"settings": {"telemetry": {"telemetryLevel": "all"}}})
        lsp.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": DOC}},
        )
        lines = DOC.split("\n")
        result["initialized_at"] = time.time() - t0
        items = completion_items(lsp, uri, len(lines) - 1, len(lines[-1]))
        result["items"] = items
        result["completed_at"] = time.time() - t0
        if items:
            lsp.notify("textDocument/didShowCompletion", {"item": items[0]})
            command = items[0].get("command")
            if command:
                lsp.request(
                    "workspace/executeCommand",
                    {"command": command["command"], "arguments": command.get("arguments", [])},
                )
            result["accepted_at"] = time.time() - t0
        # The client batches its telemetry and sends what it holds when it shuts down.
        lsp.close()
        result["closed_at"] = time.time() - t0
        deadline = time.time() + 30
        while time.time() < deadline:
            metrics = httpx.get(base + "/metrics").text
            if 'event="accepted"' in metrics and 'event="shown"' in metrics:
                break
            time.sleep(0.5)
        result["telemetry_at"] = time.time() - t0
        result["metrics"] = httpx.get(base + "/metrics").text
    finally:
        lsp.close()
        server.should_exit = True
    result["stderr"] = "".join(lsp.stderr)[-4000:]
    result["exchanges"] = [
        {
            "method": e["method"],
            "path": e["path"],
            "status": e["status"],
            "headers": e["headers"],
            "response_headers": e.get("response_headers", {}),
            "request": e["request"].decode("utf-8", "replace")[:20000],
            "body": e["body"].decode("utf-8", "replace"),
        }
        for e in recorder.exchanges
        if e["path"] != "/metrics"
    ]
    Path(out_path).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])

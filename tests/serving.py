"""Start the real `codecomplete serve` for end-to-end tests (imported as `serving`: tests/ is on sys.path)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


@contextlib.contextmanager
def serve_subprocess(model: Path | str, *args: str, timeout: float = 120.0):
    """`codecomplete serve --model <model>` (the real CLI) on a free loopback port; yields its base URL."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECOMPLETE_")}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "codecomplete", "serve", "--model", str(model), "--port", str(port)]
    cmd += ["--device", "cpu", "--log-level", "warning", *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"codecomplete serve exited with {proc.returncode}:\n{proc.stdout.read()}")
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                pytest.fail(f"codecomplete serve did not become healthy in {timeout:.0f} s")
            time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()

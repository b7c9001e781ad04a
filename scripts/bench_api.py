"""What the HTTP layer alone costs: the real uvicorn + FastAPI stack over the tests' scripted engine.

    PYTHONPATH=src python scripts/bench_api.py            # prints a small table

No model runs, so the numbers are the API's own overhead per request (parsing, validation, SSE
framing, metrics) and how it holds up under concurrency. The client speaks raw HTTP/1.1 over
asyncio sockets: httpx's connection pool, not the server, is the bottleneck beyond ~50 concurrent
requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from api.conftest import ServerThread, free_port_number, settings  # noqa: E402
from api.fake_engine import FakeEngine  # noqa: E402
from codecomplete.api import build_app  # noqa: E402


def _request(port: int, body: dict) -> bytes:
    raw = json.dumps(body).encode()
    head = (
        f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(raw)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + raw


async def _one(port: int, payload: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    data = await reader.read()
    writer.close()
    if b" 200 " not in data.split(b"\r\n", 1)[0]:
        raise RuntimeError(data[:200])


async def _run(port: int, payload: bytes, total: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def limited() -> None:
        async with sem:
            await _one(port, payload)

    start = time.perf_counter()
    await asyncio.gather(*(limited() for _ in range(total)))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    port = free_port_number()
    print("| mode | concurrency | requests/s | mean latency (ms) |\n| --- | --- | --- | --- |")
    with ServerThread(build_app(settings(), FakeEngine()), port):
        for stream in (False, True):
            payload = _request(
                port, {"prompt": "def f():\n", "max_tokens": args.max_tokens, "stream": stream}
            )
            asyncio.run(_run(port, payload, 50, 10))  # warm up
            for concurrency in (1, 16, 64):
                dt = asyncio.run(_run(port, payload, args.requests, concurrency))
                mode = "stream" if stream else "json"
                rate = args.requests / dt
                print(f"| {mode} | {concurrency} | {rate:.0f} | {1000 * concurrency / rate:.1f} |")


if __name__ == "__main__":
    main()

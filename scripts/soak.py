"""Soak the real server: many streaming clients for minutes, some dropping mid-stream; report resident
memory per minute, latency percentiles, errors and leaked slots (what `make soak` runs).

    python scripts/soak.py --minutes 10 --clients 16 --disconnect 0.3 --append BENCHMARKS.md
    python scripts/soak.py --minutes 1 --clients 4                  # a quick look, prints only
    python scripts/soak.py --base-url http://127.0.0.1:5000 --pid 1234   # a server already running
    python scripts/soak.py --minutes 3 --tracemalloc                # where the server's memory grows

The server is `codecomplete serve` in a subprocess (the real CLI), its resident memory sampled with
psutil. With --tracemalloc the server runs in this process instead (the clients in a child process,
so their allocations stay out of the picture) and the biggest allocation growths between the first
sample and the end are printed by source line.

Leaked slots: once every client has stopped (dropped streams included), the engine must report
nothing running and nothing queued within a few seconds; anything left is a leak.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import functools
import json
import os
import random
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DEFAULT_MODEL = ROOT / "models" / "codecomplete-tiny-py"


# --- clients -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def source_texts(limit: int = 60) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(stdlib.glob("*.py"))[:limit]:
        text = path.read_text(encoding="utf-8", errors="replace")
        if len(text) > 2000:
            texts.append(text)
    return texts


def make_body(rng: random.Random, texts: list[str]) -> dict:
    """A Copilot-like request: the file up to a random cursor, the rest as suffix, a few lines."""
    text = rng.choice(texts)
    cursor = rng.randrange(500, len(text))
    return {
        "prompt": text[max(0, cursor - rng.choice([300, 1000, 2500])) : cursor],
        "suffix": text[cursor : cursor + rng.choice([0, 200, 600])],
        "max_tokens": rng.choice([8, 16, 32, 64]),
        "temperature": rng.choice([0.0, 0.2, 0.8]),
        "top_p": rng.choice([1.0, 0.95]),
        "n": rng.choice([1, 1, 1, 2]),
        "stop": ["\n\n"],
        "stream": True,
    }


@dataclasses.dataclass
class Tally:
    latencies: list[float] = dataclasses.field(default_factory=list)  # completed streams, seconds
    completed: int = 0
    dropped: int = 0  # closed by the client on purpose
    errors: list[str] = dataclasses.field(default_factory=list)
    per_interval: list[int] = dataclasses.field(default_factory=list)

    def error(self, what: str) -> None:
        if len(self.errors) < 1000:
            self.errors.append(what)
        else:
            self.errors.append("...")


async def one_client(
    base: str, seed: int, stop_at: float, disconnect: float, tally: Tally, timeout: float = 600
) -> None:
    rng = random.Random(seed)
    texts = source_texts()
    async with httpx.AsyncClient(base_url=base, timeout=timeout) as client:
        while time.monotonic() < stop_at:
            body = make_body(rng, texts)
            drop_after = rng.randrange(1, 4) if rng.random() < disconnect else None
            started = time.monotonic()
            try:
                async with client.stream("POST", "/v1/completions", json=body) as r:
                    if r.status_code != 200:
                        tally.error(f"{r.status_code} {(await r.aread())[:200]!r}")
                        continue
                    events, done = 0, False
                    async for line in r.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        if line == "data: [DONE]":
                            done = True
                            break
                        if '"error"' in line and "choices" not in line:
                            tally.error(line[:200])
                        events += 1
                        if drop_after is not None and events >= drop_after:
                            break  # leaving the block closes the connection mid-stream
                    if drop_after is not None and not done:
                        tally.dropped += 1
                    elif done:
                        tally.completed += 1
                        tally.latencies.append(time.monotonic() - started)
                    else:
                        tally.error("stream ended without [DONE]")
            except httpx.HTTPError as exc:
                tally.error(f"{type(exc).__name__}: {exc}")


async def run_clients(
    base: str, clients: int, seconds: float, disconnect: float, seed: int = 0, timeout: float = 600
) -> Tally:
    tally = Tally()
    stop_at = time.monotonic() + seconds
    await asyncio.gather(
        *(one_client(base, seed * 1000 + i, stop_at, disconnect, tally, timeout) for i in range(clients))
    )
    return tally


def prefix_cache_mib(base: str) -> float | None:
    """The engine's prefix cache size (bounded by --prefix-cache-mb), from /metrics."""
    try:
        text = httpx.get(base + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("codecomplete_prefix_cache_bytes "):
            return float(line.split()[1]) / 2**20
    return None


def leaked_slots(base: str, wait_s: float = 15.0) -> tuple[int, int]:
    """(running, queued) once the engine has settled; both 0 unless something leaked."""
    deadline = time.monotonic() + wait_s
    while True:
        h = httpx.get(base + "/health", timeout=10).json()
        running, queued = int(h.get("running", 0)), int(h.get("queue_depth", 0))
        if (running == 0 and queued == 0) or time.monotonic() > deadline:
            return running, queued
        time.sleep(0.25)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


# --- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, proc: subprocess.Popen | None = None, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the server did not become healthy")
        time.sleep(0.5)


def start_server(model: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECOMPLETE_")}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    cmd = [sys.executable, "-m", "codecomplete", "serve", "--model", model, "--port", str(port)]
    cmd += ["--device", "cpu", "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, proc)
    return proc, base


def rss_mib(pid: int) -> float:
    """The server's resident memory: its process and its children (the engine process, which holds
    the model and the KV cache under `--engine-process`)."""
    import psutil

    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


# --- the run -------------------------------------------------------------------------------------


def measure(base: str, pid: int | None, t_s: float, **extra) -> dict:
    row = {"t_s": round(t_s), "load1": round(os.getloadavg()[0], 1), **extra}
    if pid is not None:
        row["rss_mib"] = round(rss_mib(pid), 1)
        cache = prefix_cache_mib(base)
        if cache is not None:
            row["prefix_cache_mib"] = round(cache, 1)
            row["rss_beyond_cache_mib"] = round(row["rss_mib"] - cache, 1)
    return row


async def soak(base: str, pid: int | None, args: argparse.Namespace, sample=None) -> dict:
    """Clients for --minutes; RSS (and `sample()`, e.g. a tracemalloc snapshot) every --sample-s,
    plus the idle server before the clients start and 15 s after they stop."""
    seconds = args.minutes * 60
    idle_before = measure(base, pid, 0, idle="before")
    rows = []
    started = time.monotonic()
    clients = asyncio.ensure_future(
        run_clients(base, args.clients, seconds, args.disconnect, args.seed, args.timeout)
        if not args.clients_in_child
        else _clients_in_child(base, args)
    )
    while not clients.done():
        await asyncio.wait({clients}, timeout=args.sample_s)
        elapsed = time.monotonic() - started
        if clients.done() and elapsed < args.sample_s * (len(rows) + 0.5):
            break
        row = measure(base, pid, elapsed)
        if sample is not None:
            sample()
        rows.append(row)
        print(json.dumps(row), flush=True)
    tally = clients.result()
    running, queued = leaked_slots(base)
    rows.append(measure(base, pid, time.monotonic() - started, after="clients stopped"))
    await asyncio.sleep(15)  # the allocator's housekeeping (engine/memory.py) runs every 10 s
    idle_after = measure(base, pid, time.monotonic() - started, idle="after")
    print(json.dumps(idle_before), json.dumps(idle_after), flush=True)
    rss = [r["rss_mib"] for r in rows if "rss_mib" in r]
    beyond = [r["rss_beyond_cache_mib"] for r in rows if "rss_beyond_cache_mib" in r]
    return {
        "clients": args.clients,
        "minutes": args.minutes,
        "disconnect": args.disconnect,
        "completed": tally.completed,
        "dropped": tally.dropped,
        "errors": len(tally.errors),
        "error_samples": tally.errors[:5],
        "leaked_running": running,
        "leaked_queued": queued,
        "latency_p50_s": round(pct(tally.latencies, 50), 3),
        "latency_p90_s": round(pct(tally.latencies, 90), 3),
        "latency_p99_s": round(pct(tally.latencies, 99), 3),
        "rss_first_mib": rss[0] if rss else None,
        "rss_last_mib": rss[-1] if rss else None,
        "rss_growth_pct": round(100 * (rss[-1] - rss[0]) / rss[0], 1) if len(rss) > 1 else None,
        # What the issue bounds: growth beyond the prefix cache (itself bounded by --prefix-cache-mb).
        "rss_beyond_cache_first_mib": beyond[0] if beyond else None,
        "rss_beyond_cache_last_mib": beyond[-1] if beyond else None,
        "rss_beyond_cache_growth_pct": round(100 * (beyond[-1] - beyond[0]) / beyond[0], 1)
        if len(beyond) > 1
        else None,
        "idle_before": idle_before,
        "idle_after": idle_after,
        "samples": rows,
    }


async def _clients_in_child(base: str, args: argparse.Namespace) -> Tally:
    cmd = [sys.executable, __file__, "--base-url", base, "--clients-only", "--minutes", str(args.minutes),
           "--clients", str(args.clients), "--disconnect", str(args.disconnect), "--seed", str(args.seed),
           "--timeout", str(args.timeout)]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    d = json.loads(out.decode().strip().splitlines()[-1])
    return Tally(latencies=d["latencies"], completed=d["completed"], dropped=d["dropped"], errors=d["errors"])


def markdown(r: dict, model: str, machine: str) -> str:
    lines = [
        "## Soak (`make soak`)",
        "",
        f"{dt.date.today()} - {machine}; model {model}; {r['clients']} streaming clients for "
        f"{r['minutes']:g} min, {100 * r['disconnect']:.0f}% of requests dropped by the client after 1-3 "
        "events. `python scripts/soak.py --minutes M --clients C --disconnect D`.",
        "",
        "| completed | dropped | errors | leaked slots (running/queued) | latency p50 / p90 / p99 | "
        "RSS first sample -> end | RSS beyond the prefix cache |",
        "|---|---|---|---|---|---|---|",
        f"| {r['completed']} | {r['dropped']} | {r['errors']} | {r['leaked_running']}/{r['leaked_queued']} | "
        f"{r['latency_p50_s']} / {r['latency_p90_s']} / {r['latency_p99_s']} s | "
        f"{r['rss_first_mib']} -> {r['rss_last_mib']} MiB ({r['rss_growth_pct']:+}%) | "
        f"{r['rss_beyond_cache_first_mib']} -> {r['rss_beyond_cache_last_mib']} MiB "
        f"({r['rss_beyond_cache_growth_pct']:+}%) |",
        "",
        f"Idle server before the clients: {r['idle_before'].get('rss_mib')} MiB RSS; 15 s after they stopped: "
        f"{r['idle_after'].get('rss_mib')} MiB, of which prefix cache {r['idle_after'].get('prefix_cache_mib')} MiB.",
        "",
        "Per sample: RSS / prefix cache (MiB), 1-minute load average: "
        + ", ".join(
            f"{s['t_s']}s: {s.get('rss_mib')} / {s.get('prefix_cache_mib')} (load {s['load1']})"
            for s in r["samples"]
        ),
        "",
    ]
    return "\n".join(lines)


def _print_growth(first, last, top: int = 20) -> None:
    print(f"\ntracemalloc: top {top} growths by line, first sample -> end")
    for stat in last.compare_to(first, "lineno")[:top]:
        print(f"  {stat.size_diff / 2**20:+8.2f} MiB {stat.count_diff:+8d} blocks  {stat.traceback}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--disconnect", type=float, default=0.3, help="share of requests dropped mid-stream")
    p.add_argument("--sample-s", type=float, default=60.0, help="seconds between RSS samples")
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--serve-arg", action="append", default=[], help="extra `codecomplete serve` flag")
    p.add_argument("--base-url", default=None, help="soak a server already running")
    p.add_argument("--pid", type=int, default=None, help="its process id (for RSS)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0, help="client timeout per request (s)")
    p.add_argument("--append", default=None, help="append the results as a section to this file")
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--tracemalloc", action="store_true", help="server in-process; print allocation growth")
    p.add_argument("--clients-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.clients_in_child = False

    if args.clients_only:
        t = asyncio.run(
            run_clients(args.base_url, args.clients, args.minutes * 60, args.disconnect, args.seed)
        )
        print(json.dumps(dataclasses.asdict(t)))
        return 0

    proc = None
    if args.tracemalloc:
        result = _soak_in_process(args)
    else:
        if args.base_url:
            base, pid = args.base_url, args.pid
        else:
            proc, base = start_server(args.model, args.serve_arg)
            pid = proc.pid
        try:
            result = asyncio.run(soak(base, pid, args))
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(60)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.append:
        import platform

        machine = (
            f"{os.cpu_count()} CPUs ({platform.machine()}), load average at start {os.getloadavg()[0]:.1f}"
        )
        with open(args.append, "a") as f:
            f.write("\n" + markdown(result, Path(args.model).name, machine))
    ok = result["errors"] == 0 and result["leaked_running"] == 0 and result["leaked_queued"] == 0
    return 0 if ok else 1


def _soak_in_process(args: argparse.Namespace) -> dict:
    import threading
    import tracemalloc

    import uvicorn

    sys.path.insert(0, str(SRC))
    from codecomplete.api import build_app
    from codecomplete.engine import EngineConfig, build_engine
    from codecomplete.settings import ServerSettings

    settings = ServerSettings(model=args.model, api_key=None, log_level="warning")
    engine = build_engine(EngineConfig(model=args.model, device="cpu", num_threads=2))
    app = build_app(settings, engine)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base)
    except SystemExit:
        sys.stdout.flush()
        os._exit(1)  # the model is still loading in a worker thread: do not wait for it
    # Started once the model is loaded: only what serving allocates is traced (and loading is not
    # slowed down by the tracing).
    tracemalloc.start(12)
    snapshots = []
    args.clients_in_child = True
    try:
        result = asyncio.run(
            soak(base, os.getpid(), args, sample=lambda: snapshots.append(tracemalloc.take_snapshot()))
        )
        snapshots.append(tracemalloc.take_snapshot())
    finally:
        server.should_exit = True
        thread.join(30)
    if len(snapshots) >= 2:
        _print_growth(snapshots[0], snapshots[-1])
    return result


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # With --tracemalloc the server ran in this process: leave without waiting for its threads.
    os._exit(code) if "--tracemalloc" in sys.argv else sys.exit(code)

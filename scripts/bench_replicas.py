"""Two replicas behind nginx (per-session affinity) against one server, all on loopback.

    python scripts/bench_replicas.py                       # bundled model, prints a Markdown table
    python scripts/bench_replicas.py --append BENCHMARKS.md

Starts one `codecomplete serve` (the single server), two more (the replicas) and nginx with
docker/nginx.local.conf (`apt-get install nginx-light` if it is missing), then measures:
1. keystroke replay: `--users` editors, each with its own VScode-SessionId, type 10 keystrokes
   into their own file; prefix-cache hit rate (summed over the replicas) and mean latency, against
   the single server, and through the same nginx without affinity (round robin) for contrast;
2. throughput at `--clients` concurrent clients (one session each), single server vs balancer;
3. a replica killed mid-run (SIGKILL, under the same load): requests that had not started streaming
   must all succeed (nginx re-sends them to the other replica); those cut mid-stream are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench import code_prompts, cpu_name  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    def __init__(self, model: str, threads: int, extra: list[str] | tuple[str, ...] = ()):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODECOMPLETE_")}
        env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, "-m", "codecomplete", "serve", "--model", model, "--port", str(self.port)]
        cmd += ["--device", "cpu", "--num-threads", str(threads), "--log-level", "warning", *extra]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica on {self.port} exited with {self.proc.returncode}")
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"replica on {self.port} did not become healthy")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class Balancer:
    def __init__(self, replicas: list[Replica], affinity: bool = True):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise SystemExit("nginx is missing: apt-get install -y nginx-light")
        self.prefix = Path(tempfile.mkdtemp(prefix="cc-nginx-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        servers = "\n    ".join(f"server 127.0.0.1:{r.port} max_fails=1 fail_timeout=10s;" for r in replicas)
        conf = (ROOT / "docker" / "nginx.local.conf").read_text()
        conf = conf.replace("@PREFIX@", str(self.prefix)).replace("@LISTEN@", str(self.port))
        conf = conf.replace("@SERVERS@", servers)
        conf = conf.replace("@BALANCE@", "hash $session_key consistent;" if affinity else "# round robin")
        (self.prefix / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen([nginx, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf")])
        deadline = time.time() + 10
        while time.time() < deadline and self.proc.poll() is None:
            try:
                httpx.get(self.base + "/health", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        log = self.prefix / "error.log"
        raise RuntimeError(
            "nginx did not start: " + (log.read_text()[-500:] if log.exists() else "see stderr")
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.prefix, ignore_errors=True)


def metric(base: str, name: str) -> float:
    try:
        text = httpx.get(base + "/metrics", timeout=5).text
    except httpx.TransportError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def cache_counts(replicas: list[Replica]) -> tuple[float, float]:
    hits = sum(metric(r.base, "codecomplete_prefix_cache_hits_total") for r in replicas)
    lookups = sum(metric(r.base, "codecomplete_prefix_cache_lookups_total") for r in replicas)
    return hits, lookups


async def complete(client: httpx.AsyncClient, base: str, prompt: str, session: str, max_tokens: int) -> dict:
    """One streamed completion; records whether any text arrived before a failure."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True, "ignore_eos": True}
    headers = {"VScode-SessionId": session}
    t0 = time.perf_counter()
    got_text, tokens, error = False, 0, None
    try:
        async with client.stream("POST", base + "/v1/completions", json=body, headers=headers) as r:
            if r.status_code != 200:
                error = f"HTTP {r.status_code}"
            else:
                async for line in r.aiter_lines():
                    if not line.startswith("data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        error = "error event"
                        break
                    for c in chunk.get("choices") or []:
                        if c.get("text"):
                            got_text = True
                            tokens += 1
                        if c.get("finish_reason"):
                            tokens = tokens  # finished cleanly
                    if any(c.get("finish_reason") for c in chunk.get("choices") or []):
                        break
                else:
                    error = error or "stream ended without finish"
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    return dict(seconds=time.perf_counter() - t0, got_text=got_text, tokens=tokens, error=error)


async def keystrokes(base: str, bases: list[str], users: list[str], max_tokens: int) -> dict:
    typed = "    result = compute(values, key=lambda item: item[1])\n"
    lat: list[float] = []

    async def user(client, prompt: str) -> None:
        session = str(uuid.uuid4())
        for i in range(10):
            r = await complete(client, base, prompt + typed[: 3 * (i + 1)], session, max_tokens)
            assert r["error"] is None, r
            lat.append(r["seconds"])

    async with httpx.AsyncClient(timeout=300) as client:
        await asyncio.gather(*(user(client, p) for p in users))
    return dict(mean=statistics.mean(lat))


async def throughput(base: str, prompts: list[str], clients: int, per_client: int, max_tokens: int) -> dict:
    async def client_loop(client, k: int) -> list[dict]:
        session = str(uuid.uuid4())
        return [
            await complete(client, base, prompts[(k * per_client + j) % len(prompts)], session, max_tokens)
            for j in range(per_client)
        ]

    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients)) as client:
        runs = await asyncio.gather(*(client_loop(client, k) for k in range(clients)))
    elapsed = time.perf_counter() - t0
    results = [r for run in runs for r in run]
    return dict(
        tok_s=sum(r["tokens"] for r in results) / elapsed,
        errors=sum(r["error"] is not None for r in results),
        requests=len(results),
    )


async def kill_mid_run(
    balancer: Balancer, victim: Replica, prompts, clients, per_client, max_tokens, after_s
):
    async def killer():
        await asyncio.sleep(after_s)
        victim.kill()

    async def client_loop(client, k: int) -> list[dict]:
        session = str(uuid.uuid4())
        return [
            await complete(client, balancer.base, prompts[(k + j) % len(prompts)], session, max_tokens)
            for j in range(per_client)
        ]

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients)) as client:
        runs, _ = await asyncio.gather(
            asyncio.gather(*(client_loop(client, k) for k in range(clients))), killer()
        )
    results = [r for run in runs for r in run]
    return dict(
        requests=len(results),
        ok=sum(r["error"] is None for r in results),
        lost_before_text=sum(r["error"] is not None and not r["got_text"] for r in results),
        cut_mid_stream=sum(r["error"] is not None and r["got_text"] for r in results),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "codecomplete-tiny-py"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads per server")
    ap.add_argument("--users", type=int, default=4, help="editors in the keystroke replay")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--per-client", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--append", help="append the Markdown section to this file")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    users = code_prompts(tok, args.users, 380)
    prompts = code_prompts(tok, 64, 120)[args.users :]

    single = Replica(args.model, args.threads)
    reps = [Replica(args.model, args.threads) for _ in range(2)]
    out: dict = {}
    try:
        for r in (single, *reps):
            r.wait()
        print("keystroke replay: single server ...", flush=True)
        h0, l0 = cache_counts([single])
        out["ks_single"] = asyncio.run(keystrokes(single.base, [], users, 8))
        h1, l1 = cache_counts([single])
        out["ks_single"]["hit_rate"] = (h1 - h0) / max(1, l1 - l0)
        for affinity in (True, False):
            label = "ks_affinity" if affinity else "ks_round_robin"
            print(f"keystroke replay: {label} ...", flush=True)
            bal = Balancer(reps, affinity=affinity)
            try:
                h0, l0 = cache_counts(reps)
                out[label] = asyncio.run(keystrokes(bal.base, [], users, 8))
                h1, l1 = cache_counts(reps)
                out[label]["hit_rate"] = (h1 - h0) / max(1, l1 - l0)
            finally:
                bal.stop()
        print(f"throughput at {args.clients} clients ...", flush=True)
        out["tp_single"] = asyncio.run(
            throughput(single.base, prompts, args.clients, args.per_client, args.max_tokens)
        )
        single.stop()  # it shares the CPU with the replicas: not during the balancer's run
        bal = Balancer(reps, affinity=True)
        try:
            out["tp_balanced"] = asyncio.run(
                throughput(bal.base, prompts, args.clients, args.per_client, args.max_tokens)
            )
            print("a replica killed mid-run ...", flush=True)
            out["kill"] = asyncio.run(
                kill_mid_run(bal, reps[1], prompts, args.clients, 3, args.max_tokens, after_s=3.0)
            )
        finally:
            bal.stop()
    finally:
        for r in (single, *reps):
            r.stop()
    out["load"] = os.getloadavg()
    md = report(args, out)
    print(md)
    if args.append:
        with open(args.append, "a") as f:
            f.write("\n" + md)


def report(args, o: dict) -> str:
    ks, ka, kr = o["ks_single"], o["ks_affinity"], o["ks_round_robin"]
    ts, tb, k = o["tp_single"], o["tp_balanced"], o["kill"]
    load = ", ".join(f"{x:.1f}" for x in o["load"])
    return f"""## Two replicas behind nginx (scripts/bench_replicas.py)

`python scripts/bench_replicas.py --users {args.users} --clients {args.clients}` on {cpu_name()}, {os.cpu_count()} cores
(load average at the end: {load}); bundled model, {args.threads} torch thread(s) per server, all on one machine.

| measurement | one server | 2 replicas + nginx, session affinity | 2 replicas + nginx, round robin |
| --- | --- | --- | --- |
| keystroke replay prefix hit rate ({args.users} editors x 10 keystrokes) | {ks["hit_rate"]:.2f} | {ka["hit_rate"]:.2f} | {kr["hit_rate"]:.2f} |
| keystroke replay mean latency | {ks["mean"] * 1e3:.0f} ms | {ka["mean"] * 1e3:.0f} ms | {kr["mean"] * 1e3:.0f} ms |
| throughput at {args.clients} clients ({args.max_tokens} tokens each, streamed) | {ts["tok_s"]:.0f} tok/s ({ts["errors"]} errors) | {tb["tok_s"]:.0f} tok/s ({tb["errors"]} errors) | |

Replica killed (SIGKILL) 3 s into a {args.clients}-client run of {k["requests"]} requests: {k["ok"]} completed,
{k["lost_before_text"]} lost before streaming (nginx re-sends those to the other replica), {k["cut_mid_stream"]} cut mid-stream
(an error for the client; never replayed).
"""


if __name__ == "__main__":
    main()

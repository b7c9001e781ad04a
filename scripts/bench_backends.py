"""Throughput at 16 clients and single-request latency: `--backend vllm` (or upstream) next to our
own engine, through the real server over loopback, one server at a time on the same CPU.

    python scripts/bench_backends.py --backend vllm                    # needs vLLM (make test-vllm)
    python scripts/bench_backends.py --backend vllm --append BENCHMARKS.md

Run it with a Python that has both codecomplete and vLLM (the venv `make test-vllm` builds): it
starts `codecomplete serve --backend local` and then `--backend vllm` on the bundled model, each
answering the same streamed greedy requests (EOS suppressed so every request does the same work).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench import code_prompts, cpu_name  # noqa: E402
from bench_replicas import Replica, complete  # noqa: E402

BACKEND_ARGS = {
    "local": [],
    "vllm": ["--backend", "vllm", "--dtype", "float32", "--vllm-arg", "enforce_eager=true"],
}


async def measure(base: str, prompts: list[str], clients: int, max_tokens: int) -> dict:
    import httpx

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients)) as client:
        await complete(client, base, prompts[0], "warm", 4)
        single = []
        for p in prompts[:5]:
            r = await complete(client, base, p, "single", max_tokens)
            assert r["error"] is None, r
            single.append(r["seconds"])
        t0 = time.perf_counter()

        async def one_client(k: int) -> list[dict]:
            return [
                await complete(client, base, prompts[(k * 2 + j) % len(prompts)], f"c{k}", max_tokens)
                for j in range(2)
            ]

        runs = await asyncio.gather(*(one_client(k) for k in range(clients)))
        elapsed = time.perf_counter() - t0
    results = [r for run in runs for r in run]
    return dict(
        single_s=statistics.median(single),
        tok_s=sum(r["tokens"] for r in results) / elapsed,
        errors=sum(r["error"] is not None for r in results),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="vllm", choices=["vllm"])
    ap.add_argument("--model", default=str(ROOT / "models" / "codecomplete-tiny-py"))
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the local engine (on a shared CPU more threads spin against other work); "
        "vLLM binds its own (VLLM_CPU_OMP_THREADS_BIND)",
    )
    ap.add_argument("--append")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    prompts = code_prompts(AutoTokenizer.from_pretrained(args.model), 40, 200)
    results = {}
    for name in ("local", args.backend):
        extra = BACKEND_ARGS[name]
        server = Replica(args.model, args.threads, extra=extra)
        try:
            server.wait(timeout=600)
            print(f"measuring --backend {name} ...", flush=True)
            results[name] = asyncio.run(measure(server.base, prompts, args.clients, args.max_tokens))
        finally:
            server.stop()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    loc, other = results["local"], results[args.backend]
    md = f"""## `--backend {args.backend}` next to our engine (scripts/bench_backends.py)

`make test-vllm` (`python scripts/bench_backends.py --backend {args.backend}`) on {cpu_name()}, {os.cpu_count()} cores,
load average {load}; bundled model, float32, local engine {args.threads} torch thread(s), vLLM its own thread binding, 200-token prompts, {args.max_tokens} tokens streamed, greedy, EOS suppressed.

| backend | single request (median of 5) | throughput at {args.clients} clients | errors |
| --- | --- | --- | --- |
| local (our engine) | {loc["single_s"] * 1e3:.0f} ms | {loc["tok_s"]:.0f} tok/s | {loc["errors"]} |
| {args.backend} | {other["single_s"] * 1e3:.0f} ms | {other["tok_s"]:.0f} tok/s | {other["errors"]} |
"""
    print(md)
    if args.append:
        with open(args.append, "a") as f:
            f.write("\n" + md)


if __name__ == "__main__":
    main()

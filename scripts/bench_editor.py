"""Editor latency (issue 13): Copilot's multi-line request under the completion deadline, and a
burst of keystrokes from one editor session, on the real server.

    python scripts/bench_editor.py                              # bundled model, default deadline
    python scripts/bench_editor.py --deadline-ms 0 --max-tokens 64   # no budget, for comparison
    python scripts/bench_editor.py --append BENCHMARKS.md

Starts `codecomplete serve` on a free loopback port. The multi-line request is what
copilot-language-server 1.539.0 sends (n=3, max_tokens 500, temperature 0.2, streamed, trim by
indentation); its time is from sending to `data: [DONE]`, as the editor waits for it. The keystroke
replay sends 10 requests of one session (VScode-SessionId), each prompt one character longer, 100 ms
apart, and samples the engine's running-request gauge every 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROMPT = (
    "# Path: fib.py\ndef fibonacci(n):\n    if n < 2:\n        return n\n"
    "    return fibonacci(n - 1) + fibonacci(n - 2)\n\n\ndef factorial(n):\n"
)
HEADERS = {
    "OpenAI-Intent": "copilot-ghost",
    "VScode-SessionId": "bench",
    "User-Agent": "GithubCopilot/1.539.0",
}


def copilot_body(**kw) -> dict:
    return {
        "prompt": PROMPT,
        "suffix": "",
        "max_tokens": 500,
        "temperature": 0.2,
        "top_p": 1,
        "n": 3,
        "stop": ["\ndef ", "\nclass ", "\nif ", "\n\n#"],
        "stream": True,
        "extra": {"language": "python", "next_indent": 0, "trim_by_indentation": True},
    } | kw


def start(model: str, args: list[str]) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECOMPLETE_")}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "codecomplete", "serve", "--model", model, "--port", str(port)]
    cmd += ["--device", "cpu", "--log-level", "warning", *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def multiline(base: str, runs: int, max_tokens: int) -> dict:
    times, finishes, texts = [], [], []
    with httpx.Client(timeout=300) as c:
        c.post(base + "/v1/completions", json=copilot_body(max_tokens=4, seed=0))  # warm-up
        for i in range(runs):
            t = time.perf_counter()
            r = c.post(
                base + "/v1/engines/copilot-codex/completions",
                json=copilot_body(seed=i, max_tokens=max_tokens),
            )
            times.append(time.perf_counter() - t)
            choices: dict[int, dict] = {}
            for line in r.text.split("\n"):
                if line.startswith("data: {"):
                    for ch in json.loads(line[6:])["choices"]:
                        c_ = choices.setdefault(ch["index"], {"text": "", "finish": None})
                        c_["text"] += ch["text"]
                        c_["finish"] = ch["finish_reason"] or c_["finish"]
            finishes += [c_["finish"] for c_ in choices.values()]
            texts += [c_["text"] for c_ in choices.values()]
    return {
        "runs": runs,
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
        "finish_length": finishes.count("length"),
        "finish_stop": finishes.count("stop"),
        "mean_chars": round(statistics.mean(len(t) for t in texts), 1),
    }


def keystrokes(base: str) -> dict:
    samples: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            m = re.search(r"^codecomplete_requests_running (\S+)$", httpx.get(base + "/metrics").text, re.M)
            samples.append(float(m.group(1)) if m else 0.0)
            time.sleep(0.01)

    latency: list[float] = []

    async def one(client: httpx.AsyncClient, body: dict) -> int:
        t = time.perf_counter()
        r = await client.post(base + "/v1/completions", json=body, headers=HEADERS)
        latency.append(time.perf_counter() - t)
        return r.status_code

    async def send() -> list[int]:
        async with httpx.AsyncClient(timeout=300) as client:
            tasks = []
            for i in range(10):
                body = copilot_body(prompt=PROMPT + "    result"[: 4 + i], n=1, temperature=0)
                tasks.append(asyncio.ensure_future(one(client, body)))
                await asyncio.sleep(0.1)
            return list(await asyncio.gather(*tasks))

    poller = threading.Thread(target=poll)
    poller.start()
    t = time.perf_counter()
    try:
        statuses = asyncio.run(send())
    finally:
        done.set()
        poller.join()
    text = httpx.get(base + "/metrics").text
    m = re.search(r'^codecomplete_requests_superseded_total\{channel="completions"\} (\S+)$', text, re.M)
    return {
        "seconds": round(time.perf_counter() - t, 3),
        "superseded": int(float(m.group(1))) if m else 0,
        "most_running": max(samples),
        "statuses": statuses,
        "last_s": round(latency[-1], 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "codecomplete-tiny-py"))
    p.add_argument(
        "--deadline-ms", type=int, default=None, help="--completion-deadline-ms (default: the server's)"
    )
    p.add_argument("--max-tokens", type=int, default=500)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--speculative-tokens", type=int, default=None, help="the server's (default: its own, 4)")
    p.add_argument("--append", default=None, help="append the result as a section of this Markdown file")
    args = p.parse_args()
    flags = [] if args.deadline_ms is None else ["--completion-deadline-ms", str(args.deadline_ms)]
    if args.num_threads:
        flags += ["--num-threads", str(args.num_threads)]
    if args.speculative_tokens is not None:
        flags += ["--speculative-tokens", str(args.speculative_tokens)]
    proc, base = start(args.model, flags)
    try:
        load = os.getloadavg()[0]
        ml = multiline(base, args.runs, args.max_tokens)
        ks = keystrokes(base)
    finally:
        proc.terminate()
        proc.wait(20)
    from codecomplete.settings import DEFAULT_COMPLETION_DEADLINE_MS

    deadline = DEFAULT_COMPLETION_DEADLINE_MS if args.deadline_ms is None else args.deadline_ms
    lines = [
        f"Copilot multi-line request (n=3, max_tokens {args.max_tokens}), deadline {deadline} ms: "
        f"median {ml['median_s']} s, max {ml['max_s']} s over {ml['runs']} runs; choices ended "
        f"length {ml['finish_length']} / stop {ml['finish_stop']}, {ml['mean_chars']} characters on average",
        f"10 keystrokes of one session 100 ms apart: {ks['superseded']} superseded, at most "
        f"{ks['most_running']:.0f} running, the last keystroke answered in {ks['last_s']} s "
        f"(all done {ks['seconds']} s after the first)",
    ]
    print("\n".join(lines))
    if args.append:
        import datetime as dt

        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        cmd = "python scripts/bench_editor.py " + " ".join(sys.argv[1:])
        with open(args.append, "a") as f:
            f.write(
                f"\n## Editor latency (deadline, superseded keystrokes)\n\n- date: {when}\n- command: `{cmd.strip()}`\n"
                f"- {os.cpu_count()} cores, load average {load:.1f}\n\n"
                + "\n".join(f"- {x}" for x in lines)
                + "\n"
            )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()

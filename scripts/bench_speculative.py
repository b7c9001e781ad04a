"""Speculative decoding on and off, side by side in one process: where drafts pay and where not.

    python scripts/bench_speculative.py                      # bundled model, 4 rounds
    python scripts/bench_speculative.py --rounds 2 --threads 1
    python scripts/bench_speculative.py --exact-max-rows 64   # sampled rows draft at any batch size

Two engines on the same weights (`--speculative-tokens 4` and `0`), driven step by step in this
process (no server, no HTTP), take the same requests in turns: a lone greedy request, lone sampled
ones (temperature 0.2 and 0.8, seeded), Copilot's n=3 at 0.2, and 4, 8 and 16 concurrent sampled or
greedy requests. Prints the median wall time per scenario with and without drafts, their ratio and
the share of drafted tokens accepted. This is the measurement behind `EXACT_SPEC_MAX_ROWS` in
engine/core.py (sampled rows speculate only in steps of up to that many rows). Run it on a quiet
machine: the two engines alternate, so background load hits both, but not evenly.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench import code_prompts  # noqa: E402

from codecomplete.engine.config import EngineConfig  # noqa: E402
from codecomplete.engine.core import EngineCore  # noqa: E402
from codecomplete.engine.types import GenerationRequest, SamplingParams  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "codecomplete-tiny-py"))
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--exact-max-rows",
        type=int,
        default=None,
        help="override engine/core.py's EXACT_SPEC_MAX_ROWS (e.g. 64: sampled rows draft in any batch, "
        "to see what the limit saves)",
    )
    args = p.parse_args()
    if args.exact_max_rows is not None:
        import codecomplete.engine.core as engine_core

        engine_core.EXACT_SPEC_MAX_ROWS = args.exact_max_rows

    cores = {
        k: EngineCore.from_config(
            EngineConfig(
                model=args.model,
                device="cpu",
                prefix_cache_mb=0,
                speculative_tokens=k,
                num_threads=args.threads,
            )
        )
        for k in (4, 0)
    }
    import torch

    torch.set_num_threads(args.threads)
    prompts = code_prompts(cores[4].tokenizer, 40, 128)
    counter = iter(range(10**9))

    def params(temperature: float, seed: int, n: int = 1) -> SamplingParams:
        return SamplingParams(
            max_tokens=args.max_tokens, temperature=temperature, seed=seed, ignore_eos=True, n=n
        )

    def rows(count: int, temperature: float):
        return lambda i: [(prompts[(i + j) % 40], params(temperature, i * 100 + j)) for j in range(count)]

    scenarios = {
        "lone greedy": rows(1, 0.0),
        "lone sampled, t=0.2": rows(1, 0.2),
        "lone sampled, t=0.8": rows(1, 0.8),
        "n=3 sampled, t=0.2": lambda i: [(prompts[i], params(0.2, i, 3))],
        "4 sampled, t=0.2": rows(4, 0.2),
        "8 sampled, t=0.2": rows(8, 0.2),
        "16 sampled, t=0.2": rows(16, 0.2),
        "16 greedy": rows(16, 0.0),
    }

    def run(core: EngineCore, requests) -> float:
        t0 = time.perf_counter()
        for prompt, sp in requests:
            core.submit(GenerationRequest(f"q{next(counter)}", sp, prompt=prompt), lambda out: None)
        while core.step():
            pass
        return time.perf_counter() - t0

    print("| requests | with drafts | without | ratio | drafted tokens accepted |")
    print("| --- | --- | --- | --- | --- |")
    for name, make in scenarios.items():
        times: dict[int, list[float]] = {4: [], 0: []}
        before = dict(cores[4].counters)
        for i in range(args.rounds):
            for k in (4, 0):
                times[k].append(run(cores[k], make(i)))
        drafted = cores[4].counters["spec_draft_tokens_total"] - before["spec_draft_tokens_total"]
        accepted = cores[4].counters["spec_accepted_tokens_total"] - before["spec_accepted_tokens_total"]
        with_, without = statistics.median(times[4]), statistics.median(times[0])
        share = f"{accepted / drafted:.0%} of {drafted}" if drafted else "none drafted"
        print(
            f"| {name} | {with_ * 1e3:.0f} ms | {without * 1e3:.0f} ms | {with_ / without:.2f}x | {share} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

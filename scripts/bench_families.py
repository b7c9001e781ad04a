"""The static slot cache and fast decode step against the dynamic cache, for one model family.

A random model of the family at the bundled model's size (6 layers x 256, vocabulary 8192,
context 512, the bundled tokenizer) is driven in-process on the CPU, one thread, both ways in
interleaved rounds: one request of 64 greedy tokens alone, then 16 at once (128-token prompts cut
from the standard library). Prints the medians and whether both ways wrote the same tokens.
Speculative decoding and prefix reuse are off, so the two paths do the same work.

    python scripts/bench_families.py --arch codegen
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "scripts")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="codegen", help="a family of models/tiny.py (default codegen)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    import bench
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codecomplete.engine.config import EngineConfig
    from codecomplete.engine.core import EngineCore
    from codecomplete.engine.types import GenerationRequest
    from codecomplete.models.tiny import tiny_config

    torch.set_num_threads(1)
    shipped = ROOT / "models" / "codecomplete-tiny-py"
    out = Path(tempfile.mkdtemp()) / args.arch
    torch.manual_seed(0)
    config = tiny_config(args.arch, 8192, n_ctx=512, width=256, layers=6)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(shipped)
    tokenizer.save_pretrained(out)
    prompts = bench.code_prompts(tokenizer, 16, 128)

    def core(kv_cache: str) -> EngineCore:
        cfg = EngineConfig(
            model=str(out),
            device="cpu",
            dtype="float32",
            kv_cache=kv_cache,
            prefix_cache_mb=0,
            speculative_tokens=0,
            token_healing=False,
        )
        return EngineCore.from_config(cfg)

    def run(engine: EngineCore, batch: list[str]) -> tuple[float, list[list[int]]]:
        outs: list[list] = [[] for _ in batch]
        t0 = time.perf_counter()
        for i, prompt in enumerate(batch):
            engine.submit(GenerationRequest(f"r{i}", bench.params(64), prompt=prompt), outs[i].append)
        while engine.step():
            pass
        took = time.perf_counter() - t0
        return took, [[t for o in got for c in o.choices for t in c.token_ids] for got in outs]

    engines = {"dynamic cache": core("dynamic"), "slot cache": core("auto")}
    for name, engine in engines.items():
        print(
            f"{name}: {type(engine.runner).__name__}, decode step "
            f"{type(getattr(engine.runner, 'fast', None)).__name__}"
        )
    single: dict[str, list[float]] = {n: [] for n in engines}
    many: dict[str, list[float]] = {n: [] for n in engines}
    tokens: dict[str, list] = {}
    order = list(engines.items())
    for r in range(args.rounds):
        for name, engine in order if r % 2 == 0 else order[::-1]:
            single[name].append(run(engine, prompts[:1])[0])
            took, ids = run(engine, prompts)
            many[name].append(16 * 64 / took)
            tokens[name] = ids
    print(f"{args.arch}, 6 x 256, one thread, load average {os.getloadavg()[0]:.1f}")
    for name in engines:
        print(
            f"  {name}: one request {statistics.median(single[name]) * 1e3:.0f} ms, "
            f"16 at once {statistics.median(many[name]):.0f} tokens/s"
        )
    same = tokens["dynamic cache"] == tokens["slot cache"]
    print(f"  same tokens both ways: {same}")


if __name__ == "__main__":
    main()

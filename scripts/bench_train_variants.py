"""Training-step throughput of model / optimizer variants, interleaved in one process (issue 16).

Each variant is a plain PyTorch training step (forward, backward, clip, AdamW) on random tokens of a
recipe's shape; the variants take turns round by round, so a busy machine slows them alike and the
ratios stay fair. What it compares:

    python scripts/bench_train_variants.py                       # gpt2 / llama x eager / compiled, AdamW foreach vs fused
    python scripts/bench_train_variants.py --threads 1 --threads 2
    python scripts/bench_train_variants.py --variants gpt2,gpt2+compile --rounds 5

A variant is `arch[+compile][+fused]` (arch: gpt2 | llama). `+compile` is `model.compile()` (TorchInductor,
compiled once, in place: the state dict keeps its names); `+fused` is `torch.optim.AdamW(fused=True)`
instead of the default foreach implementation. Compile time is reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ARCHS = {
    # ~7M parameters with an 8k vocabulary: the tiny-cpu recipe's GPT-2 and a Llama block of the same
    # width/depth (RoPE, SwiGLU, RMSNorm; SwiGLU width 704 ~ 2/3 x 4 x 256 keeps the MLP's parameters).
    "gpt2": dict(model_type="gpt2", n_layer=6, n_embd=256, n_head=4, n_positions=512,
                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True),
    "llama": dict(model_type="llama", num_hidden_layers=6, hidden_size=256, num_attention_heads=4,
                  num_key_value_heads=4, intermediate_size=704, max_position_embeddings=512,
                  tie_word_embeddings=True),
}  # fmt: skip


def build(arch: str, vocab: int):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(ARCHS[arch])
    config = AutoConfig.for_model(
        spec.pop("model_type"), vocab_size=vocab, bos_token_id=0, eos_token_id=0, **spec
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--variants", default="gpt2,gpt2+fused,gpt2+compile,gpt2+compile+fused,llama,llama+compile+fused"
    )
    p.add_argument("--threads", type=int, action="append", default=None)
    p.add_argument("--micro", type=int, default=4)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    import torch

    from codecomplete.training.model import count_params, param_groups

    threads = args.threads or [torch.get_num_threads()]
    # Inductor's C++ kernels fix their OpenMP thread count when they are compiled: compile under the
    # first thread count (a compiled variant measured under another count still uses that one).
    torch.set_num_threads(threads[0])
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, args.vocab, (args.micro, args.seq), generator=g)
    runs = {}
    for name in args.variants.split(","):
        arch, *flags = name.split("+")
        model = build(arch, args.vocab)
        n = count_params(model)
        t = time.perf_counter()
        if "compile" in flags:
            model.compile()
        opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95), fused="fused" in flags)

        def step(model=model, opt=opt):
            loss = model(input_ids=x, labels=x, use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(loss.detach())

        step()  # warm-up (and compilation)
        runs[name] = dict(
            step=step, params_m=round(n / 1e6, 2), first_step_s=round(time.perf_counter() - t, 1)
        )
    times: dict[tuple[str, int], list[float]] = {(v, th): [] for v in runs for th in threads}
    cpu: dict[tuple[str, int], list[float]] = {k: [] for k in times}  # CPU seconds per step, all threads
    for _ in range(args.rounds):
        for th in threads:
            torch.set_num_threads(th)
            for v, r in runs.items():
                for _ in range(args.steps):
                    t, c = time.perf_counter(), time.process_time()
                    r["step"]()
                    times[(v, th)].append(time.perf_counter() - t)
                    cpu[(v, th)].append(time.process_time() - c)
    tokens = args.micro * args.seq
    load = os.getloadavg()
    print(f"{args.micro} x {args.seq} tokens/step, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(
        "| variant | params | threads | tokens/s (median) | s/step | tokens per CPU-second (median) | first step (incl. compile) |"
    )
    print("|---|---|---|---|---|---|---|")
    out = []
    for (v, th), ts in times.items():
        med = statistics.median(ts)
        row = dict(variant=v, threads=th, params_m=runs[v]["params_m"], tokens_per_s=round(tokens / med),
                   step_s=round(med, 3), first_step_s=runs[v]["first_step_s"],
                   tokens_per_cpu_s=round(tokens / statistics.median(cpu[(v, th)])),
                   cpu_s=[round(c, 2) for c in cpu[(v, th)]], wall_s=[round(t, 2) for t in ts])  # fmt: skip
        out.append(row)
        print(
            f"| {v} | {row['params_m']}M | {th} | {row['tokens_per_s']:,} | {med:.3f} | "
            f"{row['tokens_per_cpu_s']:,} | {row['first_step_s']} s |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(dict(load=load, rows=out), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

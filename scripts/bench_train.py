"""Training throughput under DeepSpeed ZeRO, and ZeRO's overhead against a plain PyTorch loop.

Same model (a recipe's architecture), same batches, same AdamW / clipping / schedule; the plain loop
and the DeepSpeed engine take turns in one process so that a busy machine slows both alike.

    python scripts/bench_train.py                              # 1 rank: ZeRO-2 vs plain PyTorch
    python scripts/bench_train.py --ranks 2 --zero zero2       # 2 ranks (CPU: 2 processes)
    python scripts/bench_train.py --recipe configs/train/tiny-cpu.yaml --set run.precision=bf16

Prints a markdown table (and --json writes the numbers). On a machine without CUDA it sets
DS_ACCELERATOR=cpu and runs the ranks as processes with gloo.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=str(ROOT / "configs/train/tiny-cpu.yaml"))
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    p.add_argument("--zero", default=None, help="DeepSpeed template (default: the recipe's run.zero)")
    p.add_argument("--ranks", type=int, default=1)
    p.add_argument("--vocab-size", type=int, default=8192, help="the recipe's tokenizer is not needed")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of plain / DeepSpeed steps")
    p.add_argument("--steps", type=int, default=2, help="optimizer steps per round")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--append", default=None, help="append the table as a section of this Markdown file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # result path, set by the launcher call
    return p


def _load_cfg(args):
    from codecomplete.training.config import TrainConfig

    overrides = list(args.overrides) + ([f"run.zero={args.zero}"] if args.zero else [])
    return TrainConfig.from_yaml(args.recipe, overrides)


def _model(cfg, vocab_size: int):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    arch = dict(cfg.model.arch)
    config = AutoConfig.for_model(
        arch.pop("model_type"), vocab_size=vocab_size, bos_token_id=0, eos_token_id=0, **arch
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def _time_steps(step_fn, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        step_fn()
        times.append(time.perf_counter() - t)
    return times


def worker(args) -> None:
    import deepspeed
    import torch
    import torch.distributed as dist
    from deepspeed.accelerator import get_accelerator

    from codecomplete.training.ds_config import build_deepspeed_config, zero_stage
    from codecomplete.training.model import count_params, param_groups

    cfg = _load_cfg(args)
    acc = get_accelerator()
    if acc.device_name() == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_SIZE", "1"))))
    deepspeed.init_distributed(dist_backend=acc.communication_backend_name(), verbose=False)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cpu") if acc.device_name() == "cpu" else torch.device(acc.device_name(), rank)
    run, optim = cfg.run, cfg.optim
    g = torch.Generator().manual_seed(rank)
    batches = [
        torch.randint(0, args.vocab_size, (run.micro_batch_size, cfg.data.seq_len), generator=g).to(device)
        for _ in range(run.grad_accum)
    ]
    base = _model(cfg, args.vocab_size)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[run.precision]

    def lr_lambda(s):
        return optim.lr_factor(s, run.max_steps)

    # DeepSpeed
    ds_config = build_deepspeed_config(cfg, world, acc.device_name())
    model_d = copy.deepcopy(base)
    if run.compile:
        model_d.compile()
    engine, _, _, _ = deepspeed.initialize(
        model=model_d,
        model_parameters=param_groups(model_d, optim.weight_decay),
        config=ds_config,
        lr_scheduler=lambda o: torch.optim.lr_scheduler.LambdaLR(o, lr_lambda),
    )

    def ds_step():
        for x in batches:
            loss = engine(input_ids=x, labels=x, use_cache=False).loss
            engine.backward(loss)
            engine.step()

    # Plain PyTorch (one rank only): the same work without DeepSpeed.
    plain_step = None
    if world == 1:
        model_p = copy.deepcopy(base).to(device=device, dtype=dtype)
        if run.compile:
            model_p.compile()
        opt = torch.optim.AdamW(
            param_groups(model_p, optim.weight_decay), lr=optim.lr, betas=optim.betas, eps=optim.eps
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)

        def plain_step():
            for x in batches:
                loss = model_p(input_ids=x, labels=x, use_cache=False).loss / run.grad_accum
                loss.backward()
            if optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model_p.parameters(), optim.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)

    ds_step()  # warm up both (allocations, first-call paths)
    if plain_step:
        plain_step()
    ds_times, plain_times = [], []
    ds_cpu = 0.0  # CPU seconds this rank spent in the DeepSpeed steps (all its threads)
    for _ in range(args.rounds):
        if plain_step:
            plain_times += _time_steps(plain_step, args.steps)
        cpu = time.process_time()
        ds_times += _time_steps(ds_step, args.steps)
        ds_cpu += time.process_time() - cpu
        dist.barrier()
    # Tokens per CPU-second over all ranks: what a loaded machine cannot distort (wall-clock tokens/s
    # depends on the share of the cores the run gets).
    cpu_t = torch.tensor([ds_cpu], dtype=torch.float64)
    dist.all_reduce(cpu_t)
    tokens = cfg.tokens_per_step(world)
    result = {
        "recipe": Path(args.recipe).name,
        "overrides": args.overrides,
        "params_m": round(count_params(base) / 1e6, 2),
        "zero": run.zero,
        "zero_stage": zero_stage(ds_config),
        "ranks": world,
        "accelerator": acc.device_name(),
        "precision": run.precision,
        "tokens_per_step": tokens,
        "deepspeed_step_s": statistics.median(ds_times),
        "deepspeed_tokens_per_s": tokens / statistics.median(ds_times),
        "deepspeed_tokens_per_cpu_s": tokens * len(ds_times) / float(cpu_t.item()),
        "threads_per_rank": torch.get_num_threads(),
        "compile": run.compile,
        "load_average": os.getloadavg()[0],
    }
    if plain_times:
        result["plain_step_s"] = statistics.median(plain_times)
        result["plain_tokens_per_s"] = tokens / statistics.median(plain_times)
        result["zero_overhead_pct"] = 100 * (result["deepspeed_step_s"] / result["plain_step_s"] - 1)
    if rank == 0:
        Path(args.worker).write_text(json.dumps(result))


def launch(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        out = Path(tmp) / "result.json"
        env = dict(os.environ)
        try:
            import torch

            cuda = torch.cuda.is_available()
        except Exception:
            cuda = False
        if not cuda:
            env.setdefault("DS_ACCELERATOR", "cpu")
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        argv = [a for a in sys.argv[1:]]
        cmd = [
            sys.executable,
            "-u",
            "-m",
            "deepspeed.launcher.runner",
            "--num_gpus",
            str(args.ranks),
            "--master_port",
            str(port),
            "--no_local_rank",
            str(Path(__file__).resolve()),
            *argv,
            "--worker",
            str(out),
        ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit(f"benchmark failed (exit {proc.returncode})")
        return json.loads(out.read_text())


def to_markdown(r: dict) -> str:
    lines = [
        f"Training ({r['recipe']}, {r['params_m']}M parameters, {r['precision']}, {r['tokens_per_step']:,} tokens/step, "
        f"{r['accelerator']}):",
        "",
        "| loop | ranks | threads/rank | compile | tokens/s | s/step | tokens per CPU-second | load |",
        "|---|---|---|---|---|---|---|---|",
        f"| DeepSpeed ZeRO-{r['zero_stage']} ({r['zero']}) | {r['ranks']} | {r['threads_per_rank']} | "
        f"{r['compile']} | {r['deepspeed_tokens_per_s']:,.0f} | {r['deepspeed_step_s']:.3f} | "
        f"{r['deepspeed_tokens_per_cpu_s']:,.0f} | {r['load_average']:.1f} |",
    ]
    if "plain_step_s" in r:
        lines.append(
            f"| plain PyTorch | 1 | {r['threads_per_rank']} | {r['compile']} | {r['plain_tokens_per_s']:,.0f} | "
            f"{r['plain_step_s']:.3f} | - | |"
        )
        lines += [
            "",
            f"ZeRO overhead vs plain PyTorch on one rank: {r['zero_overhead_pct']:+.1f}% (target <= 10%)",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    result = launch(args)
    print(to_markdown(result))
    if args.append:
        import datetime as dt
        import platform

        cmd = "python scripts/bench_train.py " + " ".join(sys.argv[1:] if argv is None else argv)
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        section = (
            f"\n## Training throughput\n\n- date: {when}\n- command: `{cmd.strip()}`\n"
            f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.1f}\n\n{to_markdown(result)}\n"
        )
        with open(args.append, "a") as f:
            f.write(section)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

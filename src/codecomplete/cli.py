"""The composition root: `codecomplete serve|curate|tokenizer|train|export|eval|bench`.

The only module that wires the parts together. Each subcommand builds its config objects from the
command line and calls into one part of the package; heavy imports happen inside the handlers so
`codecomplete --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys


# --- serve (api + engine) ---------------------------------------------------------------------


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve completions over HTTP (OpenAI, Copilot, fauxpilot, ivolution)")
    p.set_defaults(handler=_run_serve)


def _run_serve(args: argparse.Namespace, extra: list[str]) -> int:
    raise SystemExit("serve: not wired yet")


# --- curate (data) ----------------------------------------------------------------------------


def _add_curate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curate", help="build a clean, deduplicated, tokenised corpus from a recipe")
    p.set_defaults(handler=_run_curate)


def _run_curate(args: argparse.Namespace, extra: list[str]) -> int:
    raise SystemExit("curate: not wired yet")


# --- tokenizer (models.tokenizer over a curated corpus) ----------------------------------------


def _add_tokenizer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenizer", help="train a byte-level BPE tokenizer with FIM tokens")
    p.set_defaults(handler=_run_tokenizer)


def _run_tokenizer(args: argparse.Namespace, extra: list[str]) -> int:
    raise SystemExit("tokenizer: not wired yet")


# --- train / export (training) ----------------------------------------------------------------


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train with DeepSpeed ZeRO (runs under the deepspeed launcher)",
        description="Train or fine-tune a causal code model from a YAML recipe under DeepSpeed's launcher. "
        "On a machine without CUDA it sets DS_ACCELERATOR=cpu (gloo between ranks).",
    )
    p.add_argument("--config", required=True, help="recipe YAML (configs/train/*.yaml)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="SECTION.FIELD=VALUE",
        help="override one recipe field, e.g. --set optim.lr=1e-4 (repeatable)",
    )
    p.add_argument(
        "--resume",
        default=None,
        help="'auto' (newest complete checkpoint in run.out_dir) or a checkpoint path",
    )
    p.add_argument("--num-gpus", type=int, default=None, help="ranks per node (on the CPU: processes)")
    p.add_argument("--num-nodes", type=int, default=None, help="nodes to use from the hostfile")
    p.add_argument(
        "--hostfile", default=None, help="DeepSpeed hostfile: 'host slots=N' per line (multi-node)"
    )
    p.add_argument("--master-addr", default=None, help="rendezvous address (multi-node)")
    p.add_argument("--master-port", type=int, default=None, help="rendezvous port (default 29500)")
    p.add_argument(
        "--launcher", default=None, help="multi-node backend: pdsh (default), openmpi, slurm, mpich, impi"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="validate the recipe, print the launch command, exit"
    )
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace, extra: list[str]) -> int:
    import os
    import shlex

    from codecomplete.training.config import ConfigError, TrainConfig

    try:  # fail here, not in N ranks
        cfg = TrainConfig.from_yaml(args.config, args.overrides)
    except (ConfigError, OSError) as e:
        raise SystemExit(f"codecomplete train: {e}") from None
    worker = ["--config", args.config] + [f"--set={o}" for o in args.overrides]
    if args.resume:
        worker += ["--resume", args.resume]
    user_cmd = ["codecomplete", "train", "--config", args.config]
    for flag, value in (
        ("--num-gpus", args.num_gpus),
        ("--num-nodes", args.num_nodes),
        ("--hostfile", args.hostfile),
    ):
        if value is not None:
            user_cmd += [flag, str(value)]
    for o in args.overrides:
        user_cmd += ["--set", o]
    worker += ["--command", shlex.join(user_cmd)]  # recorded in checkpoints and the model card
    env = dict(os.environ)
    if "DS_ACCELERATOR" not in env and not _has_cuda():
        env["DS_ACCELERATOR"] = "cpu"
    if env.get("LOCAL_RANK") is not None and env.get("WORLD_SIZE") is not None:
        # Already one rank of a launched job (srun, torchrun, mpirun): train in this process.
        os.environ.update(env)
        from codecomplete.training import worker as w

        return w.main(worker)
    launch = [sys.executable, "-u", "-m", "deepspeed.launcher.runner"]
    for flag, value in (
        ("--num_gpus", args.num_gpus),
        ("--num_nodes", args.num_nodes),
        ("--hostfile", args.hostfile),
        ("--master_addr", args.master_addr),
        ("--master_port", args.master_port),
        ("--launcher", args.launcher),
    ):
        if value is not None:
            launch += [flag, str(value)]
    cmd = launch + ["--no_local_rank", "--module", "codecomplete.training.worker"] + worker
    print(
        f"{'DS_ACCELERATOR=' + env['DS_ACCELERATOR'] + ' ' if 'DS_ACCELERATOR' in env else ''}{shlex.join(cmd)}",
        flush=True,
    )
    print(f"run: {cfg.run.out_dir}", flush=True)
    if args.dry_run:
        return 0
    # exec: signals sent to this process reach the launcher, which forwards them to every rank.
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="gather a ZeRO checkpoint into a servable Hugging Face folder",
        description="Merge a checkpoint's ZeRO shards into one Hugging Face model folder (safetensors, config, "
        "tokenizer, generation config, model card) that `codecomplete serve --model` loads.",
    )
    p.add_argument(
        "checkpoint", help="a checkpoint folder (step-*), a run's out_dir, or its checkpoints/ folder"
    )
    p.add_argument("out", help="the model folder to write")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="weights dtype in the exported folder",
    )
    p.add_argument(
        "--eval-json", default=None, help="a `codecomplete eval` result JSON to put in the model card"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty folder")
    p.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace, extra: list[str]) -> int:
    import json
    import os

    if "DS_ACCELERATOR" not in os.environ and not _has_cuda():
        os.environ["DS_ACCELERATOR"] = "cpu"  # deepspeed's import probes for an accelerator
    from codecomplete.training.export import export

    evals = json.loads(open(args.eval_json).read()) if args.eval_json else None
    try:
        out = export(
            args.checkpoint, args.out, dtype=args.dtype, eval_results=evals, overwrite=args.overwrite
        )
    except (FileNotFoundError, FileExistsError) as e:
        raise SystemExit(f"codecomplete export: {e}") from None
    print(out)
    return 0


# --- eval -------------------------------------------------------------------------------------


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a model folder or a running server")
    p.set_defaults(handler=_run_eval)


def _run_eval(args: argparse.Namespace, extra: list[str]) -> int:
    raise SystemExit("eval: not wired yet")


# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codecomplete", description=__doc__.splitlines()[0])
    from codecomplete import __version__

    parser.add_argument("--version", action="version", version=f"codecomplete {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_serve, _add_curate, _add_tokenizer, _add_train, _add_export, _add_eval):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return int(args.handler(args, extra) or 0)

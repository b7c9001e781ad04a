"""The entry point each rank runs under the DeepSpeed launcher (`codecomplete train` builds the command).

    DS_ACCELERATOR=cpu deepspeed --num_gpus 2 --no_local_rank --module codecomplete.training.worker \\
        --config configs/train/tiny-cpu.yaml --set run.max_steps=50
"""

from __future__ import annotations

import argparse
import shlex

from codecomplete.training.config import TrainConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    p.add_argument("--resume", default=None)
    p.add_argument(
        "--command", default=None, help=argparse.SUPPRESS
    )  # the user's command, for the model card
    # Launchers called without --no_local_rank append --local_rank=N.
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cfg = TrainConfig.from_yaml(args.config, args.overrides)
    from codecomplete.training.loop import train

    command = args.command or " ".join(
        ["codecomplete train --config", shlex.quote(args.config)]
        + [f"--set {shlex.quote(o)}" for o in args.overrides]
    )
    train(cfg, resume=args.resume, command=command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

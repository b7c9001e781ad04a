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
    p = sub.add_parser("train", help="train with DeepSpeed ZeRO (runs under the deepspeed launcher)")
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace, extra: list[str]) -> int:
    raise SystemExit("train: not wired yet")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="gather a ZeRO checkpoint into a servable Hugging Face folder")
    p.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace, extra: list[str]) -> int:
    raise SystemExit("export: not wired yet")


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

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
    p.add_argument("--config", required=True, help="a recipe, e.g. configs/data/local-python.yaml")
    p.add_argument("--out", default=None, help="output folder (overrides the recipe's `out`)")
    p.add_argument("--workers", type=int, default=None, help="tasks run at the same time (executor.workers)")
    p.add_argument(
        "--tasks", type=int, default=None, help="tasks per stage (executor.tasks; fixed per --out)"
    )
    p.add_argument(
        "--tokenizer", default=None, help="tokenizer folder: also write token shards (tokens.tokenizer)"
    )
    p.add_argument(
        "--write-dropped", action="store_true", help="write dropped documents under <out>/dropped/"
    )
    p.add_argument("--restart", action="store_true", help="discard a previous run in --out and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=_run_curate)


def _run_curate(args: argparse.Namespace, extra: list[str]) -> int:
    import os
    import time

    import yaml

    from codecomplete.data.config import CurateConfig
    from codecomplete.data.pipeline import run_curate
    from codecomplete.data.report import summary

    raw = yaml.safe_load(open(args.config)) or {}
    if args.out:
        raw["out"] = args.out
    ex = raw.setdefault("executor", {}) or {}
    raw["executor"] = ex
    if args.workers is not None:
        ex["workers"] = args.workers
    if args.tasks is not None:
        ex["tasks"] = args.tasks
    if args.tokenizer:
        raw.setdefault("tokens", {})
        raw["tokens"] = {**(raw["tokens"] or {}), "tokenizer": args.tokenizer}
    if args.write_dropped:
        raw["write_dropped"] = True
    if args.no_progress:
        raw["progress"] = False
    cfg = CurateConfig.from_dict(raw)
    # GitHub tokens: read here (the composition root), passed down; data/ never reads the environment.
    tokens = []
    for src in cfg.sources:
        if src.kind == "github":
            for var in src.token_env:
                tokens += [t.strip() for t in os.environ.get(var, "").split(",") if t.strip()]
    t0 = time.time()
    stats = run_curate(cfg, tokens_env=tokens, restart=args.restart)
    elapsed = time.time() - t0
    if stats is None:
        print(f"curate: submitted to {cfg.executor.kind}; {cfg.out}/stats.json appears when it finishes")
        return 0
    with open(os.path.join(cfg.out, "timing.json"), "w") as f:
        f.write(
            f'{{"elapsed_s": {elapsed:.1f}, "workers": {cfg.executor.workers}, "tasks": {cfg.executor.tasks}}}\n'
        )
    print(summary(stats, elapsed))
    print(f"  -> {cfg.out}/documents, {cfg.out}/stats.json, {cfg.out}/report.html")
    return 0


# --- tokenizer (models.tokenizer over a curated corpus) ----------------------------------------


def _add_tokenizer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenizer", help="train a byte-level BPE tokenizer with FIM tokens")
    tsub = p.add_subparsers(dest="tokenizer_command", required=True)
    t = tsub.add_parser("train", help="train on the train split of a curated folder")
    t.add_argument("--input", required=True, help="a folder written by `codecomplete curate`")
    t.add_argument("--out", required=True, help="where the Hugging Face tokenizer folder goes")
    t.add_argument("--vocab-size", type=int, default=16384)
    t.add_argument("--min-frequency", type=int, default=2)
    t.add_argument("--split", default="train", help="which split to learn from (never the held-out one)")
    t.add_argument("--max-documents", type=int, default=None, help="learn from at most this many documents")
    t.add_argument("--model-max-length", type=int, default=1024)
    t.add_argument("--fim-template", default="codecomplete")
    p.set_defaults(handler=_run_tokenizer)


def _run_tokenizer(args: argparse.Namespace, extra: list[str]) -> int:
    import itertools

    from codecomplete.data.document import iter_code
    from codecomplete.models.tokenizer import train_bpe

    texts = iter_code(args.input, split=args.split)
    if args.max_documents:
        texts = itertools.islice(texts, args.max_documents)
    out = train_bpe(
        texts,
        args.out,
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        model_max_length=args.model_max_length,
        fim_template=args.fim_template,
    )
    print(f"tokenizer: {out} (vocab {args.vocab_size}, trained on {args.input} [{args.split}])")
    return 0


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

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
    p = sub.add_parser(
        "serve",
        help="serve completions over HTTP (OpenAI, Copilot, fauxpilot, ivolution)",
        description="Serve completions over HTTP. Every flag is also a CODECOMPLETE_<FLAG> environment "
        "variable (e.g. CODECOMPLETE_MODEL, CODECOMPLETE_API_KEY); a flag wins over the variable.",
    )
    # Defaults are None here so that an unset flag falls through to the environment, then to
    # ServerSettings' default (settings.py documents each one).
    p.add_argument(
        "--model",
        help="local model folder or hub id (default: models/codecomplete-tiny-py, "
        "else a tiny random model built under --cache-dir)",
    )
    p.add_argument(
        "--served-model-name",
        nargs="+",
        metavar="NAME",
        help="names the model answers to (default: the model folder's name)",
    )
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 5000, the fauxpilot extension's default)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="default auto")
    p.add_argument("--api-key", help="require Authorization: Bearer <key> on the API routes (default: none)")
    p.add_argument("--max-batch-size", type=int, help="most sequences decoded together (default 32)")
    p.add_argument("--max-queue", type=int, help="most waiting requests before 429 (default 256)")
    p.add_argument(
        "--max-step-tokens", type=int, help="prompt tokens prefilled per engine step (default 2048)"
    )
    p.add_argument("--fim-template", help="force a fill-in-the-middle template (default: detected)")
    p.add_argument("--seed", type=int, help="sampler seed for requests without one (default 0)")
    p.add_argument(
        "--prefix-cache-mb", type=int, help="memory for prompt-prefix KV reuse, 0 = off (default 256)"
    )
    p.add_argument("--num-threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--max-body-bytes", type=int, help="largest request body, 413 beyond (default 2 MiB)")
    p.add_argument("--max-n", type=int, help="largest n / best_of (default 20)")
    p.add_argument("--max-choices", type=int, help="largest prompts x n in one request (default 64)")
    p.add_argument("--max-stop", type=int, help="most stop strings per request (default 16)")
    p.add_argument("--max-tokens-limit", type=int, help="largest max_tokens accepted (default 65536)")
    p.add_argument(
        "--cache-dir", help="where the fallback tiny model is built (default ~/.cache/codecomplete)"
    )
    p.add_argument(
        "--log-level", choices=["critical", "error", "warning", "info", "debug", "trace"], help="default info"
    )
    p.set_defaults(handler=_run_serve)


_SERVE_FLAGS = (
    "model",
    "served_model_name",
    "host",
    "port",
    "device",
    "dtype",
    "api_key",
    "max_batch_size",
    "max_queue",
    "max_step_tokens",
    "fim_template",
    "seed",
    "prefix_cache_mb",
    "num_threads",
    "max_body_bytes",
    "max_n",
    "max_tokens_limit",
    "max_choices",
    "max_stop",
    "cache_dir",
    "log_level",
)


def serve_settings(args: argparse.Namespace):
    """ServerSettings from the flags the user gave (the rest from CODECOMPLETE_* or defaults)."""
    from pydantic import ValidationError

    from codecomplete.settings import ServerSettings

    given = {k: getattr(args, k) for k in _SERVE_FLAGS if getattr(args, k, None) is not None}
    try:
        return ServerSettings(**given)
    except ValidationError as e:
        first = e.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-") if first.get("loc") else "a flag"
        raise SystemExit(f"serve: {flag}: {first['msg']}") from None


def resolve_model(settings) -> str:
    """--model, else the model shipped in models/, else a tiny random model (said loudly)."""
    import logging

    from codecomplete.settings import SHIPPED_MODEL_NAME, shipped_model

    if settings.model:
        return settings.model
    shipped = shipped_model()
    if shipped is not None:
        return str(shipped)
    from codecomplete.models.tiny import build_tiny_model

    out = settings.cache_dir / "tiny-gpt2"
    logging.getLogger("codecomplete").warning(
        "no --model given and models/%s is missing: serving a TINY RANDOM model built at %s "
        "(its completions are gibberish; it is only for trying clients). Pass --model <folder or hub id>.",
        SHIPPED_MODEL_NAME,
        out,
    )
    return str(build_tiny_model("gpt2", out))


def _run_serve(args: argparse.Namespace, extra: list[str]) -> int:
    import logging

    import uvicorn

    from codecomplete.api import build_app
    from codecomplete.engine import EngineConfig, build_engine

    settings = serve_settings(args)
    level = "DEBUG" if settings.log_level == "trace" else settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model = resolve_model(settings)
    try:
        config = EngineConfig(
            model=model,
            served_names=list(settings.served_model_name),
            device=settings.device,
            dtype=settings.dtype,
            max_batch_size=settings.max_batch_size,
            max_queue=settings.max_queue,
            max_step_tokens=settings.max_step_tokens,
            fim_template=settings.fim_template,
            seed=settings.seed,
            prefix_cache_mb=settings.prefix_cache_mb,
            num_threads=settings.num_threads,
        )
    except ValueError as e:
        raise SystemExit(f"serve: {e}") from None
    # The port opens at once and /health says 503 while the model loads; a model that fails to
    # load stops the server with an error rather than leaving it answering 503.
    failures: list[BaseException] = []

    def on_start_failure(exc: BaseException) -> None:
        failures.append(exc)
        server.should_exit = True

    app = build_app(
        settings, build_engine(config), start_in_background=True, on_start_failure=on_start_failure
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=settings.log_level in ("debug", "trace"),
        )
    )
    logging.getLogger("codecomplete").info(
        "listening on http://%s:%d (loading %s)", settings.host, settings.port, model
    )
    server.run()
    if failures:
        exc = failures[0]
        raise SystemExit(f"serve: the model failed to load: {type(exc).__name__}: {exc}")
    return 0


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

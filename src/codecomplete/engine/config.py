"""The engine's configuration (the `codecomplete serve` engine flags map onto these fields)."""

from __future__ import annotations

from dataclasses import dataclass, field

_DEVICES = ("auto", "cpu", "cuda")
_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class EngineConfig:
    model: str
    """A local Hugging Face model folder or a hub id (hub ids need the hub cache: no downloads)."""
    served_names: list[str] = field(default_factory=list)
    """Names the model answers to; the first is the primary name. Empty: the folder's name."""
    device: str = "auto"
    """auto (CUDA when present, else CPU) | cpu | cuda."""
    dtype: str = "auto"
    """auto (bf16 on CUDA with bf16 support, else fp16 on CUDA, float32 on CPU) | float32 | bfloat16 | float16."""
    max_batch_size: int = 32
    """Most sequences decoded together in one step (n>1 counts each choice)."""
    max_queue: int = 256
    """Most requests waiting to start; beyond it generate() raises QueueFullError (HTTP 429)."""
    max_step_tokens: int = 2048
    """Prefill token budget per step: new prompts join the batch while their tokens fit."""
    fim_template: str | None = None
    """Force a FIM template by name (models/fim.py); None detects it from the tokenizer."""
    seed: int = 0
    """Seeds the engine's generator for requests that give no seed of their own."""
    prefix_cache_mb: int = 256
    """Memory bound of the prefix-reuse KV cache in MiB (LRU); 0 turns prefix reuse off."""
    prefix_min_tokens: int = 16
    """A cached prefix is reused only when at least this many prompt tokens match."""
    batch_invariance: str = "auto"
    """CPU: "auto" makes a sequence's logits bit-identical alone or in any batch (row-wise
    attention, column-major Linear weights, a ghost row for a lone sampled sequence); "strict"
    also gives lone greedy sequences their ghost (slower at batch 1); "off" keeps the model as
    loaded (fastest, last-bit differences between batch compositions). See docs/engine.md."""
    num_threads: int | None = None
    """CPU threads for torch's intra-op pool (process-wide); None keeps torch's default. On a
    machine shared with other busy processes, 1 avoids OpenMP threads spinning against each other."""
    attn_implementation: str | None = None
    """None/"auto": row-wise batch-invariant attention on the CPU where the family supports it, the
    model's default on CUDA; "rowwise", "eager" or "sdpa" force one (docs/engine.md)."""
    kv_cache: str = "auto"
    """"auto"/"slots": a static KV cache with one slot per batch row (engine/slot_runner.py) for
    the families that support it (GPT-2, GPTBigCode, Llama, Qwen2), the dynamic left-padded cache
    for the others; "dynamic" forces the dynamic cache for every family (docs/engine.md)."""
    compile: str = "auto"
    """The one-token decode step (engine/fast_decode.py) under torch.compile: "on" (on CUDA its
    graphs are captured as CUDA graphs; not yet run on a GPU), "off", or "auto" (off for now on
    every device, until the CUDA graphs are measured on a GPU: engine/core.py). Families
    without a fast decode step are never compiled; a compilation that fails falls back to eager
    with a log line (docs/engine.md)."""
    process: str = "off"
    """Where the engine runs: "on" = its own process (engine/process.py: the server process keeps
    HTTP, the engine never waits for its GIL), "off" = a thread of the caller's process, "auto" =
    its own process on a machine with more than one core. `serve` defaults to auto; code that
    embeds the engine (tests, scripts) gets the thread unless it asks."""
    token_healing: bool = True
    """Heal text prompts that end mid-word: drop the prompt's last word-like token(s) and make the
    first generated token(s) re-type them (hidden from the client), so `    ret` continues as the
    model's `return` token rather than after a split it rarely saw. Off for FIM and token-id
    prompts. A request's `token_healing` overrides it either way (docs/engine.md)."""
    token_healing_max_chars: int = 8
    """Longest tail (in characters) that healing may remove from a prompt."""
    speculative_tokens: int = 4
    """Speculative decoding with prompt-lookup drafts (engine/speculate.py): up to this many tokens
    guessed from the sequence's own context are checked in one forward; 0 turns it off. Greedy
    rows alone or batched; sampled rows where the check is exact (the fast decoder's families,
    not compiled, up to EXACT_SPEC_MAX_ROWS rows). Static-cache families only (docs/engine.md)."""

    def __post_init__(self) -> None:
        if self.device not in _DEVICES:
            raise ValueError(f"device must be one of {_DEVICES} (--device), got {self.device!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES} (--dtype), got {self.dtype!r}")
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1 (--max-batch-size)")
        if self.max_queue < 1:
            raise ValueError("max_queue must be >= 1 (--max-queue)")
        if self.max_step_tokens < 1:
            raise ValueError("max_step_tokens must be >= 1 (--max-step-tokens)")
        if self.batch_invariance not in ("auto", "strict", "off"):
            raise ValueError("batch_invariance must be auto, strict or off")
        if self.kv_cache not in ("auto", "slots", "dynamic"):
            raise ValueError("kv_cache must be auto, slots or dynamic (--kv-cache)")
        if self.compile not in ("auto", "on", "off"):
            raise ValueError("compile must be auto, on or off (--compile)")
        if self.process not in ("auto", "on", "off"):
            raise ValueError("process must be auto, on or off (--engine-process)")
        if self.prefix_min_tokens < 1:
            raise ValueError("prefix_min_tokens must be >= 1")
        if self.speculative_tokens < 0:
            raise ValueError("speculative_tokens must be >= 0 (--speculative-tokens)")
        if self.token_healing_max_chars < 1:
            raise ValueError("token_healing_max_chars must be >= 1 (--token-healing-max-chars)")
        self.served_names = list(self.served_names)

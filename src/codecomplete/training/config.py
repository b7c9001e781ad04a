"""Training recipes as dataclasses: one section per concern, a docstring per field, checks that name
the flag to change (litgpt / nanoGPT style).

A recipe is a YAML file with the sections `model`, `data`, `optim` and `run`; any field can be
overridden from the command line with `--set section.field=value`:

    codecomplete train --config configs/train/tiny-cpu.yaml --set optim.lr=1e-3 --set run.max_steps=200
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Precision = Literal["bf16", "fp16", "fp32"]


class ConfigError(ValueError):
    """A recipe value that cannot work; the message names the `--set` flag that fixes it."""


def _check(ok: bool, key: str, message: str, hint: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message} (change it with --set {key}={hint})")


@dataclass
class ModelConfig:
    name_or_path: str | None = None
    """Hugging Face model folder or hub id to fine-tune. Leave empty to train from scratch from `arch`."""
    arch: dict[str, Any] = field(default_factory=dict)
    """From scratch only: Hugging Face config fields, `model_type` included (e.g. {model_type: gpt2,
    n_layer: 6}). vocab_size and the bos/eos ids are taken from the tokenizer."""
    tokenizer: str | None = None
    """Tokenizer folder (from `codecomplete tokenizer train`) or hub id. Default: the model's own
    tokenizer, else the one named in the token dataset's meta.json."""
    fim_template: str | None = None
    """FIM template name from models/fim.py. Default: detected from the tokenizer's special tokens."""
    add_fim_tokens: str | None = None
    """Add this FIM template's special tokens to a tokenizer that lacks them (e.g. codecomplete, for a
    base model without FIM); the embeddings are resized for them."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    trust_remote_code: bool = False
    """Allow model code from the hub (some older code models need it)."""

    def __post_init__(self) -> None:
        if self.add_fim_tokens:
            from codecomplete.models.fim import TEMPLATES

            _check(
                self.add_fim_tokens in TEMPLATES,
                "model.add_fim_tokens",
                f"unknown template {self.add_fim_tokens!r}",
                "codecomplete",
            )
        _check(
            bool(self.name_or_path) != bool(self.arch),
            "model.name_or_path",
            "set exactly one of model.name_or_path (fine-tune) and model.arch (from scratch)",
            "<folder or hub id>",
        )
        if self.arch:
            _check("model_type" in self.arch, "model.arch.model_type", "a from-scratch arch needs it", "gpt2")
            _check(
                bool(self.tokenizer),
                "model.tokenizer",
                "a from-scratch model needs a tokenizer folder",
                "<folder from `codecomplete tokenizer train`>",
            )


@dataclass
class DataConfig:
    path: str = ""
    """Token dataset directory (the token shard contract: meta.json + <split>/shard-*.bin)."""
    seq_len: int = 1024
    """Tokens per training sequence; documents are packed with end-of-text separators."""
    fim_rate: float = 0.5
    """Share of documents turned into fill-in-the-middle examples at training time."""
    fim_spm_rate: float = 0.5
    """Of the FIM examples, the share in suffix-prefix-middle order (the rest are prefix-suffix-middle)."""
    train_split: str = "train"
    """Split of the token dataset to train on."""
    valid_split: str = "valid"
    """Split used for validation loss and perplexity (no FIM: plain left-to-right text)."""
    valid_sequences: int = 64
    """Validation sequences (of seq_len tokens) evaluated each time; the same ones every time."""
    start_sample: int = 0
    """Skip this many samples of the seed's data order. A run continued from an export with the
    previous run's seed and `start_sample` = where that run stopped (its card's history says)
    trains on the samples that run would have seen next, so no part of an epoch is repeated."""

    def __post_init__(self) -> None:
        _check(bool(self.path), "data.path", "the token dataset directory is required", "<dir>")
        _check(self.seq_len >= 8, "data.seq_len", f"must be at least 8 (got {self.seq_len})", "1024")
        _check(
            0.0 <= self.fim_rate <= 1.0, "data.fim_rate", f"must be in [0, 1] (got {self.fim_rate})", "0.5"
        )
        _check(
            0.0 <= self.fim_spm_rate <= 1.0,
            "data.fim_spm_rate",
            f"must be in [0, 1] (got {self.fim_spm_rate})",
            "0.5",
        )
        _check(self.valid_sequences >= 0, "data.valid_sequences", "must be >= 0", "64")
        _check(self.start_sample >= 0, "data.start_sample", "must be >= 0", "0")


@dataclass
class OptimConfig:
    lr: float = 3e-4
    """Peak learning rate, reached at the end of the warmup."""
    min_lr_ratio: float = 0.1
    """The cosine decay ends at lr x min_lr_ratio at run.max_steps."""
    warmup_steps: int = 100
    """Linear warmup from 0 to lr over this many optimizer steps."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """After the warmup: cosine decay to lr x min_lr_ratio, or constant."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.1
    """AdamW weight decay, applied to matrices only (not to biases, norms)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this; 0 turns clipping off."""
    impl: Literal["auto", "torch", "deepspeed"] = "auto"
    """AdamW implementation. auto: DeepSpeed's fused/CPU Adam on GPUs and with offload, torch's AdamW
    on the CPU accelerator without offload (no C++ op to compile)."""
    fused: bool = False
    """torch's AdamW only: its fused kernel (`fused=True`) instead of the foreach one. Under ZeRO the
    optimizer updates flat partitions, so this rarely matters (docs/train.md, "Throughput")."""

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        _check(self.lr > 0, "optim.lr", f"must be > 0 (got {self.lr})", "3e-4")
        _check(0.0 <= self.min_lr_ratio <= 1.0, "optim.min_lr_ratio", "must be in [0, 1]", "0.1")
        _check(self.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0", "100")
        _check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "optim.betas",
            "two values in [0, 1)",
            "[0.9,0.95]",
        )
        _check(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0", "0.1")
        _check(self.grad_clip >= 0, "optim.grad_clip", "must be >= 0", "1.0")
        _check(self.schedule in ("cosine", "constant"), "optim.schedule", "cosine or constant", "cosine")
        _check(self.impl in ("auto", "torch", "deepspeed"), "optim.impl", "auto, torch or deepspeed", "auto")

    def lr_factor(self, step: int, max_steps: int) -> float:
        """Multiplier of `lr` for optimizer step `step` (0-based): a pure function of the step, so a
        resumed run continues on the same curve."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.schedule == "constant":
            return 1.0
        span = max(1, max_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class RunConfig:
    out_dir: str = "runs/default"
    """Where checkpoints, TensorBoard events and metrics.jsonl go."""
    max_steps: int = 1000
    """Optimizer steps to train for."""
    micro_batch_size: int = 8
    """Sequences per rank per forward/backward pass."""
    grad_accum: int = 1
    """Micro batches accumulated per optimizer step. Global batch = micro x accum x world size."""
    precision: Precision = "bf16"
    """bf16, fp16 (GPUs only) or fp32. On a CPU without AVX512-BF16, fp32 is usually faster."""
    zero: str = "zero2"
    """DeepSpeed template: a name in configs/deepspeed/ (zero1, zero2, zero3, zero2_offload,
    zero3_offload, zero3_nvme) or a path to a JSON file."""
    seed: int = 1234
    """Seeds the weights of a fresh model, the data order and FIM choices."""
    eval_every: int = 200
    """Validation loss/perplexity every this many steps (and at the end); 0: only at the end."""
    save_every: int = 500
    """Checkpoint every this many steps (and at the end); 0: only at the end."""
    keep_last: int = 3
    """Complete checkpoints to keep; older ones are deleted."""
    log_every: int = 10
    """Write loss, lr and tokens/s to TensorBoard and metrics.jsonl every this many steps."""
    threads_per_rank: int = 0
    """CPU only: torch threads per rank; 0 = the machine's cores divided by the ranks on it."""
    time_limit_s: float = 0.0
    """Stop (evaluate, checkpoint) after the first step that ends this many seconds into the run's
    training loop, even before max_steps; 0 = no limit. For a lent machine with a fixed budget: the
    learning-rate schedule is still the one for max_steps, so set max_steps to about what fits."""
    compile: bool = False
    """`torch.compile` the model (TorchInductor; in place, so checkpoints keep their parameter names).
    The first steps pay the compilation (about a minute on a 2-core CPU); later steps run fused kernels."""
    fault_kill_at_step: int = 0
    """Testing only: rank 0 SIGKILLs itself right after this optimizer step (0 = never)."""
    fault_kill_in_save_at: int = 0
    """Testing only: rank 0 SIGKILLs itself while writing the checkpoint of this step (0 = never)."""

    def __post_init__(self) -> None:
        _check(self.max_steps > 0, "run.max_steps", f"must be > 0 (got {self.max_steps})", "1000")
        _check(self.micro_batch_size > 0, "run.micro_batch_size", "must be > 0", "8")
        _check(self.grad_accum > 0, "run.grad_accum", "must be > 0", "1")
        _check(
            self.precision in ("bf16", "fp16", "fp32"), "run.precision", f"unknown {self.precision!r}", "bf16"
        )
        _check(self.keep_last >= 1, "run.keep_last", "keep at least one checkpoint", "3")
        _check(self.time_limit_s >= 0, "run.time_limit_s", "must be >= 0", "0")
        for key in ("eval_every", "save_every", "log_every", "threads_per_rank"):
            _check(getattr(self, key) >= 0, f"run.{key}", "must be >= 0", "0")
        _check(self.log_every > 0, "run.log_every", "must be > 0", "10")

    def global_batch(self, world_size: int) -> int:
        return self.micro_batch_size * self.grad_accum * world_size


@dataclass
class TrainConfig:
    model: ModelConfig
    """What to train: a pretrained model or a fresh architecture, and its tokenizer."""
    data: DataConfig
    """The token dataset, packing and FIM augmentation."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW and the learning-rate schedule."""
    run: RunConfig = field(default_factory=RunConfig)
    """Steps, batch, precision, ZeRO template, evaluation and checkpoint cadence."""

    def tokens_per_step(self, world_size: int) -> int:
        return self.run.global_batch(world_size) * self.data.seq_len

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["optim"]["betas"] = list(self.optim.betas)
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        return _build(cls, raw, "")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        for item in overrides or []:
            apply_override(raw, item)
        return cls.from_dict(raw)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `section.field=value` to a raw recipe dict; the value is parsed as YAML."""
    key, sep, value = item.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set expects section.field=value, got {item!r}")
    *parents, leaf = key.strip().split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item}: {p} is not a section")
    node[leaf] = yaml.safe_load(value) if value.strip() else None


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'recipe'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + u for u in unknown)}; known: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value or {}, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(hint, value, f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except TypeError as e:  # a missing required section
        raise ConfigError(f"{prefix or 'recipe'}: {e}") from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """YAML reads `3e-4` as a string and `1` where a float is meant: fix what is unambiguous."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: cannot use {value!r} as {hint}")
    try:
        if hint is float and isinstance(value, (int, str)) and not isinstance(value, bool):
            return float(value)
        if hint is int and isinstance(value, str):
            return int(value)
        if hint is bool and not isinstance(value, bool):
            raise ValueError
        if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError
    except ValueError:
        raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}") from None
    if origin is tuple:
        return tuple(float(v) if args and args[0] is float else v for v in value)
    return value

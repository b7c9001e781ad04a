"""The DeepSpeed config dict, built from a recipe plus a template in configs/deepspeed/.

The templates hold what is about memory layout (ZeRO stage, offload, bucket sizes); the recipe holds
what is about the optimisation (batch, precision, AdamW, clipping). Template keys left as "auto" are
filled from the recipe; a template value that contradicts the recipe is an error, so that
train batch = micro batch x accumulation x world size always holds.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from codecomplete.training.config import ConfigError, TrainConfig

_REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "deepspeed"


def template_path(name_or_path: str) -> Path:
    """A template by file path, or by name in ./configs/deepspeed or the repository's configs/deepspeed."""
    p = Path(name_or_path)
    if p.suffix == ".json" and p.is_file():
        return p
    for root in (Path.cwd() / "configs" / "deepspeed", _REPO_CONFIGS):
        cand = root / f"{name_or_path}.json"
        if cand.is_file():
            return cand
    known = sorted(x.stem for x in _REPO_CONFIGS.glob("*.json")) if _REPO_CONFIGS.is_dir() else []
    raise ConfigError(
        f"run.zero: no DeepSpeed template {name_or_path!r} (known: {', '.join(known)}; or a path to a .json)"
        f" (change it with --set run.zero=zero2)"
    )


def load_template(name_or_path: str) -> dict[str, Any]:
    return json.loads(template_path(name_or_path).read_text())


def zero_stage(ds: dict[str, Any]) -> int:
    return int(ds.get("zero_optimization", {}).get("stage", 0))


def offloads_optimizer(ds: dict[str, Any]) -> bool:
    dev = ds.get("zero_optimization", {}).get("offload_optimizer", {}).get("device", "none")
    return dev not in (None, "none")


def _fill(ds: dict[str, Any], key: str, value: Any, flag: str) -> None:
    """Set `key` unless the template pins a different value."""
    current = ds.get(key, "auto")
    if current != "auto" and current != value:
        raise ConfigError(
            f'the DeepSpeed template sets {key}={current} but the recipe gives {value}: set it to "auto"'
            f" in the template, or change {flag}"
        )
    ds[key] = value


def build_deepspeed_config(cfg: TrainConfig, world_size: int, accelerator: str = "cuda") -> dict[str, Any]:
    """The dict for `deepspeed.initialize(config=...)` for `world_size` ranks on `accelerator`
    ("cuda", "cpu", ... as deepspeed.accelerator names it)."""
    run, optim = cfg.run, cfg.optim
    ds = copy.deepcopy(load_template(run.zero))
    _fill(ds, "train_micro_batch_size_per_gpu", run.micro_batch_size, "run.micro_batch_size")
    _fill(ds, "gradient_accumulation_steps", run.grad_accum, "run.grad_accum")
    _fill(ds, "train_batch_size", run.global_batch(world_size), "run.micro_batch_size / run.grad_accum")
    _fill(ds, "gradient_clipping", float(optim.grad_clip), "optim.grad_clip")

    if run.precision == "fp16" and accelerator == "cpu":
        raise ConfigError(
            "run.precision: fp16 is not supported on the CPU (change it with --set run.precision=fp32)"
        )
    bf16 = dict(ds.get("bf16", {}))
    bf16["enabled"] = run.precision == "bf16"
    fp16 = dict(ds.get("fp16", {}))
    fp16["enabled"] = run.precision == "fp16"
    if fp16["enabled"]:
        fp16.setdefault("loss_scale", 0)  # dynamic loss scaling
        fp16.setdefault("initial_scale_power", 16)
        fp16.setdefault("loss_scale_window", 1000)
        fp16.setdefault("hysteresis", 2)
        fp16.setdefault("min_loss_scale", 1)
    ds["bf16"], ds["fp16"] = bf16, fp16

    offload = offloads_optimizer(ds)
    impl = optim.impl
    if impl == "auto":
        impl = "deepspeed" if (offload or accelerator != "cpu") else "torch"
    params: dict[str, Any] = {
        "lr": optim.lr,
        "betas": list(optim.betas),
        "eps": optim.eps,
        "weight_decay": optim.weight_decay,
    }
    if impl == "torch":
        # torch.optim.AdamW: nothing to compile (DeepSpeed's FusedAdam is a C++ op on the CPU).
        params["torch_adam"] = True
        if optim.fused:
            params["fused"] = True
        if offload:
            # ZeRO-Offload insists on DeepSpeedCPUAdam unless told otherwise.
            ds["zero_force_ds_cpu_optimizer"] = False
    ds["optimizer"] = {"type": "AdamW", "params": params}
    ds.setdefault("steps_per_print", 10**9)  # the loop prints its own progress
    return ds

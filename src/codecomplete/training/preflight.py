"""Everything about a recipe that can be checked before the ranks launch, checked once, in seconds.

Without this a missing data folder or `run.zero=zero9` passed the CLI, started every rank, and failed
inside each after half a minute with a message that did not name the field. Each check here raises a
ConfigError naming the recipe field and the `--set` flag that fixes it. Cheap checks come first;
only the precision check needs torch (to ask the GPU what it supports).
"""

from __future__ import annotations

import json
from pathlib import Path

from codecomplete.training.config import ConfigError, TrainConfig

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def _fail(key: str, message: str, hint: str) -> ConfigError:
    return ConfigError(f"{key}: {message} (change it with --set {key}={hint})")


def _looks_local(name: str) -> bool:
    """A path rather than a hub id ("org/name"): absolute, relative with ./ or ../, ~, or deeper."""
    return name.startswith(("/", "./", "../", "~", ".")) or name.count("/") >= 2 or Path(name).exists()


def check_data(cfg: TrainConfig) -> dict:
    """data.path is a finished token dataset with the train split (or several, separated by
    commas, written with one tokenizer); returns its meta.json (theirs, merged)."""
    from codecomplete.training.data import FORMAT, TokenShards, data_paths

    try:
        roots = data_paths(cfg.data.path)
    except ValueError as e:
        raise _fail("data.path", str(e), "<token dataset dir>") from None
    for root in roots:
        if not root.is_dir():
            raise _fail("data.path", f"no directory {str(root)!r}", "<token dataset dir>")
        meta_path = root / "meta.json"
        if not meta_path.is_file():
            raise _fail(
                "data.path",
                f"{str(root)!r} has no meta.json: not a token dataset, or `codecomplete curate` has not finished",
                "<token dataset dir>",
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise _fail(
                "data.path", f"{meta_path} is not readable JSON ({e})", "<token dataset dir>"
            ) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            got = meta.get("format") if isinstance(meta, dict) else None
            raise _fail(
                "data.path", f"{meta_path}: format {got!r}, expected {FORMAT!r}", "<token dataset dir>"
            )
        splits = meta.get("splits") or {}
        if cfg.data.train_split not in splits:
            raise _fail(
                "data.train_split",
                f"{str(root)!r} has no split {cfg.data.train_split!r} (it has {', '.join(splits) or 'none'})",
                next(iter(splits), "train"),
            )
    try:
        shards = TokenShards(roots, cfg.data.train_split)  # every shard file there, not empty, one tokenizer
    except (OSError, ValueError, KeyError) as e:
        raise _fail(
            "data.path", f"split {cfg.data.train_split!r} is unreadable: {e}", "<token dataset dir>"
        ) from None
    return shards.meta


def check_model_and_tokenizer(cfg: TrainConfig, meta: dict) -> None:
    """Local model and tokenizer folders exist and hold a tokenizer (hub ids are left to the ranks)."""
    m = cfg.model
    if m.name_or_path and _looks_local(m.name_or_path):
        path = Path(m.name_or_path).expanduser()
        if not (path / "config.json").is_file():
            raise _fail(
                "model.name_or_path", f"{str(path)!r} is not a model folder (no config.json)", "<folder>"
            )
    if m.tokenizer:
        key, source = "model.tokenizer", m.tokenizer
    elif m.name_or_path:
        key, source = "model.name_or_path", m.name_or_path
    elif meta.get("tokenizer"):
        key, source = "model.tokenizer", str(meta["tokenizer"])  # named by the dataset's meta.json
    else:
        raise _fail(
            "model.tokenizer", "no tokenizer: the recipe names none and meta.json has none", "<folder>"
        )
    if _looks_local(source):
        path = Path(source).expanduser()
        if not path.is_dir():
            raise _fail(key, f"no tokenizer folder {str(path)!r}", "<tokenizer folder>")
        if not any((path / f).is_file() for f in TOKENIZER_FILES):
            raise _fail(
                key, f"{str(path)!r} holds no tokenizer ({', '.join(TOKENIZER_FILES)})", "<tokenizer folder>"
            )


def check_deepspeed(cfg: TrainConfig, world_size: int | None, accelerator: str | None) -> None:
    """The template exists and agrees with the recipe (batch, precision on this accelerator)."""
    from codecomplete.training.ds_config import build_deepspeed_config, load_template

    try:
        load_template(cfg.run.zero)  # an unknown name is a ConfigError naming run.zero already
    except ConfigError:
        raise
    except ValueError as e:  # json.JSONDecodeError
        raise _fail("run.zero", f"the DeepSpeed template is not valid JSON: {e}", "zero2") from None
    if accelerator is not None and world_size is not None:
        build_deepspeed_config(cfg, world_size, accelerator)


def check_precision(cfg: TrainConfig, accelerator: str) -> None:
    p = cfg.run.precision
    if p == "fp16" and accelerator == "cpu":
        raise _fail("run.precision", "fp16 needs a GPU; this run is on the CPU", "fp32")
    if p == "bf16" and accelerator == "cuda":
        import torch

        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            raise _fail("run.precision", f"{torch.cuda.get_device_name()} has no bfloat16", "fp16")


def preflight(cfg: TrainConfig) -> None:
    """The checks that need neither torch nor the launch: data, model and tokenizer, template."""
    meta = check_data(cfg)
    check_model_and_tokenizer(cfg, meta)
    check_deepspeed(cfg, None, None)


def preflight_launch(cfg: TrainConfig, accelerator: str, world_size: int | None) -> None:
    """The checks that need the accelerator ("cpu", "cuda") and, when known, the number of ranks."""
    check_precision(cfg, accelerator)
    check_deepspeed(cfg, world_size, accelerator)

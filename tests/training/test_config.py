"""Recipes, overrides and the DeepSpeed config built from them (no DeepSpeed run here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codecomplete.training.config import ConfigError, OptimConfig, TrainConfig
from codecomplete.training.ds_config import build_deepspeed_config, load_template, zero_stage

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "configs" / "train").glob("*.yaml"))
TEMPLATES = sorted((ROOT / "configs" / "deepspeed").glob("*.json"))


def test_the_three_recipes_ship():
    names = {p.stem for p in RECIPES}
    assert {"tiny-cpu", "code-clippy-finetune", "rugpt3-large-finetune"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
@pytest.mark.parametrize("world", [1, 2, 8])
def test_every_recipe_loads_and_builds_a_consistent_deepspeed_config(recipe, world):
    cfg = TrainConfig.from_yaml(recipe)
    ds = build_deepspeed_config(cfg, world_size=world, accelerator="cuda")
    run = cfg.run
    assert (
        ds["train_batch_size"]
        == ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"] * world
    )
    assert ds["train_micro_batch_size_per_gpu"] == run.micro_batch_size
    assert ds["gradient_accumulation_steps"] == run.grad_accum
    assert ds["gradient_clipping"] == cfg.optim.grad_clip
    assert ds["bf16"]["enabled"] == (run.precision == "bf16")
    assert ds["fp16"]["enabled"] == (run.precision == "fp16")
    assert ds["optimizer"]["params"]["betas"] == list(cfg.optim.betas)
    assert "auto" not in json.dumps(ds)  # everything the template left open is filled
    # the recipe survives a round trip through its own YAML (what checkpoints store)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_code_clippy_recipe_keeps_its_optimiser():
    cfg = TrainConfig.from_yaml(ROOT / "configs/train/code-clippy-finetune.yaml")
    assert cfg.optim.betas == (0.9, 0.95) and cfg.optim.weight_decay == 0.1
    assert cfg.optim.schedule == "cosine" and cfg.optim.min_lr_ratio == 0.1 and cfg.optim.warmup_steps > 0


def test_tiny_cpu_recipe_is_cpu_ready():
    cfg = TrainConfig.from_yaml(ROOT / "configs/train/tiny-cpu.yaml")
    assert cfg.run.precision == "fp32"  # measured faster than bf16 on this CPU (docs/train.md)
    ds = build_deepspeed_config(cfg, world_size=2, accelerator="cpu")
    assert ds["optimizer"]["params"]["torch_adam"] is True  # nothing to compile without offload
    assert cfg.data.fim_rate > 0 and cfg.model.arch["model_type"] == "gpt2"


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.stem)
def test_every_deepspeed_template_loads(template):
    ds = load_template(template.stem)
    assert zero_stage(ds) in (1, 2, 3)
    assert ds["train_batch_size"] == "auto"


def test_offload_templates_offload_to_cpu_and_pick_deepspeed_adam():
    cfg = TrainConfig.from_yaml(ROOT / "configs/train/tiny-cpu.yaml", ["run.zero=zero3_offload"])
    ds = build_deepspeed_config(cfg, world_size=2, accelerator="cpu")
    z = ds["zero_optimization"]
    assert (
        z["stage"] == 3
        and z["offload_optimizer"]["device"] == "cpu"
        and z["offload_param"]["device"] == "cpu"
    )
    assert "torch_adam" not in ds["optimizer"]["params"]  # DeepSpeedCPUAdam


def test_overrides_are_typed_and_nested():
    cfg = TrainConfig.from_yaml(
        ROOT / "configs/train/tiny-cpu.yaml",
        [
            "optim.lr=3e-4",
            "run.max_steps=7",
            "model.arch.n_layer=2",
            "optim.betas=[0.8, 0.9]",
            "data.fim_rate=0",
        ],
    )
    assert cfg.optim.lr == 3e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.run.max_steps == 7 and cfg.model.arch["n_layer"] == 2
    assert cfg.optim.betas == (0.8, 0.9) and cfg.data.fim_rate == 0.0


@pytest.mark.parametrize(
    "override, flag",
    [
        ("data.fim_rate=1.5", "data.fim_rate"),
        ("run.micro_batch_size=0", "run.micro_batch_size"),
        ("run.precision=fp8", "run.precision"),
        ("optim.lr=-1", "optim.lr"),
        ("run.zero=zero9", "run.zero"),
        ("run.max_steps=ten", "run.max_steps"),
        ("run.nonsense=1", "run.nonsense"),
    ],
)
def test_bad_values_name_the_flag_to_change(override, flag):
    with pytest.raises(ConfigError, match=flag.replace(".", r"\.")):
        cfg = TrainConfig.from_yaml(ROOT / "configs/train/tiny-cpu.yaml", [override])
        build_deepspeed_config(cfg, world_size=1, accelerator="cpu")


def test_model_needs_exactly_one_source():
    with pytest.raises(ConfigError, match="model.name_or_path"):
        TrainConfig.from_yaml(ROOT / "configs/train/tiny-cpu.yaml", ["model.name_or_path=gpt2"])


def test_fp16_is_refused_on_the_cpu():
    cfg = TrainConfig.from_yaml(ROOT / "configs/train/tiny-cpu.yaml", ["run.precision=fp16"])
    with pytest.raises(ConfigError, match="run.precision"):
        build_deepspeed_config(cfg, world_size=1, accelerator="cpu")


def test_template_that_pins_a_different_batch_is_an_error(tmp_path):
    pinned = load_template("zero2") | {"train_batch_size": 999}
    (tmp_path / "pinned.json").write_text(json.dumps(pinned))
    cfg = TrainConfig.from_yaml(
        ROOT / "configs/train/tiny-cpu.yaml", [f"run.zero={tmp_path / 'pinned.json'}"]
    )
    with pytest.raises(ConfigError, match="train_batch_size"):
        build_deepspeed_config(cfg, world_size=2, accelerator="cpu")


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    o = OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    factors = [o.lr_factor(s, 100) for s in range(100)]
    assert factors[0] < factors[5] < factors[9] <= 1.0  # warmup rises
    assert max(factors) == pytest.approx(1.0, abs=1e-9) and factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))  # then never rises
    assert o.lr_factor(100, 100) == pytest.approx(0.1) and min(factors[10:]) > 0.1 - 1e-9


def test_train_command_validates_then_builds_the_launcher_call(
    capsys, monkeypatch, token_dataset, tiny_model_dir
):
    from codecomplete.cli import main

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    recipe = str(ROOT / "configs/train/tiny-cpu.yaml")
    data = ["--set", f"data.path={token_dataset}", "--set", f"model.tokenizer={tiny_model_dir}"]
    assert (
        main(["train", "--config", recipe, "--num-gpus", "2", "--set", "run.max_steps=5", *data, "--dry-run"])
        == 0
    )
    out = capsys.readouterr().out
    assert "-m deepspeed.launcher.runner --num_gpus 2" in out
    assert "--module codecomplete.training.worker --config" in out and "--set=run.max_steps=5" in out
    with pytest.raises(SystemExit, match="run.max_steps"):
        main(["train", "--config", recipe, "--set", "run.max_steps=0", "--dry-run"])

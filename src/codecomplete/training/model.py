"""The model and tokenizer to train: a Hugging Face causal LM from a folder / hub id, or a fresh one from
a config plus this project's tokenizer. New special tokens (FIM) resize the embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codecomplete.models import fim
from codecomplete.training.config import ModelConfig


def tokenizer_source(cfg: ModelConfig, dataset_meta: dict[str, Any] | None = None) -> str:
    if cfg.tokenizer:
        return cfg.tokenizer
    if cfg.name_or_path:
        return cfg.name_or_path
    if dataset_meta and dataset_meta.get("tokenizer"):
        return str(dataset_meta["tokenizer"])
    raise ValueError("no tokenizer: set model.tokenizer")


def load_tokenizer(cfg: ModelConfig, dataset_meta: dict[str, Any] | None = None):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        tokenizer_source(cfg, dataset_meta), trust_remote_code=cfg.trust_remote_code
    )
    if cfg.add_fim_tokens:
        vocab = tok.get_vocab()
        missing = [t for t in fim.from_name(cfg.add_fim_tokens).special_tokens() if t not in vocab]
        if missing:
            tok.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return tok


def fim_template_for(cfg: ModelConfig, tokenizer, model_config=None) -> fim.FimTemplate | None:
    """The explicit template, else the model config's `fim_template`, else the tokenizer's."""
    configured = cfg.fim_template or cfg.add_fim_tokens or getattr(model_config, "fim_template", None)
    configured = configured or getattr(tokenizer, "init_kwargs", {}).get("fim_template")
    return fim.detect(tokenizer.get_vocab(), configured)


def build_model(cfg: ModelConfig, tokenizer, seed: int = 0):
    """A model whose embedding table covers every token of `tokenizer`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    eos_id = tokenizer.eos_token_id
    if cfg.name_or_path:
        model = AutoModelForCausalLM.from_pretrained(
            cfg.name_or_path, dtype=torch.float32, trust_remote_code=cfg.trust_remote_code
        )
    else:
        arch = dict(cfg.arch)
        model_type = arch.pop("model_type")
        arch.setdefault(
            "bos_token_id", tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos_id
        )
        arch.setdefault("eos_token_id", eos_id)
        arch["vocab_size"] = len(tokenizer)
        config = AutoConfig.for_model(model_type, **arch)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    template = fim_template_for(cfg, tokenizer, model.config)
    if template is not None:
        model.config.fim_template = template.name
    # A tokenizer that gained special tokens (FIM) needs embedding rows for them; a model whose table
    # is already large enough (padded vocabularies) is left alone.
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model


def param_groups(model, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on matrices (2-D and up), none on biases, norms and other vectors."""
    decay, no_decay, seen = [], [], set()
    for _, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:  # tied weights appear twice
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def count_params(model) -> int:
    # Under ZeRO-3 a rank holds a shard and p.numel() is 0 (it printed "0.00M parameters"):
    # DeepSpeed keeps the full size in ds_numel.
    return sum(
        getattr(p, "ds_numel", None) or p.numel() for p in {id(p): p for p in model.parameters()}.values()
    )


def describe(model) -> str:
    n = count_params(model)
    tied = getattr(model.config, "tie_word_embeddings", False)
    return f"{type(model).__name__} ({model.config.model_type}), {n / 1e6:.2f}M parameters, tied embeddings: {tied}"


def save_tokenizer_and_config(model, tokenizer, out: Path) -> None:
    """What export needs next to the weights: the HF config and tokenizer."""
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)

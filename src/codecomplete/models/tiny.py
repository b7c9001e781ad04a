"""Tiny random-weight models of every architecture family the registry knows.

The tests (and `codecomplete serve` before a model ships) build these locally: no download.
A tiny model is a real Hugging Face model folder (config, safetensors, tokenizer), so it exercises
exactly the loading code that real checkpoints go through.

    python -m codecomplete.models.tiny gpt2 /tmp/tiny-gpt2
"""

from __future__ import annotations

import argparse
import json
import sysconfig
from pathlib import Path

from codecomplete.models.tokenizer import train_bpe

ARCHITECTURES = ("gpt2", "gpt_neo", "codegen", "gpt_bigcode", "llama", "qwen2")


def stdlib_sources(max_bytes: int = 400_000, skip: int = 0) -> list[str]:
    """Python source from the standard library (always on the machine, permissively licensed), in a
    stable order: the first `max_bytes` or so, after skipping `skip` modules."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts, total = [], 0
    for path in sorted(stdlib.glob("*.py"))[skip:]:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        texts.append(text)
        total += len(text)
        if total >= max_bytes:
            break
    return texts


def tiny_config(arch: str, vocab_size: int, n_ctx: int = 256, width: int = 64, layers: int = 2):
    from transformers import (
        CodeGenConfig,
        GPT2Config,
        GPTBigCodeConfig,
        GPTNeoConfig,
        LlamaConfig,
        Qwen2Config,
    )

    common = dict(vocab_size=vocab_size, bos_token_id=0, eos_token_id=0)
    if arch == "gpt2":
        return GPT2Config(n_layer=layers, n_embd=width, n_head=4, n_positions=n_ctx, **common)
    if arch == "gpt_neo":
        return GPTNeoConfig(
            num_layers=layers,
            hidden_size=width,
            num_heads=4,
            attention_types=[[["global", "local"], layers // 2]],
            window_size=n_ctx // 2,
            max_position_embeddings=n_ctx,
            **common,
        )
    if arch == "codegen":
        return CodeGenConfig(
            n_layer=layers, n_embd=width, n_head=4, rotary_dim=8, n_positions=n_ctx, n_ctx=n_ctx, **common
        )
    if arch == "gpt_bigcode":
        return GPTBigCodeConfig(
            n_layer=layers, n_embd=width, n_head=4, n_positions=n_ctx, multi_query=True, **common
        )
    if arch in ("llama", "qwen2"):
        cls = LlamaConfig if arch == "llama" else Qwen2Config
        return cls(
            num_hidden_layers=layers,
            hidden_size=width,
            intermediate_size=2 * width,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=n_ctx,
            tie_word_embeddings=True,
            **common,
        )
    raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")


def build_tiny_model(
    arch: str,
    out_dir: str | Path,
    vocab_size: int = 512,
    n_ctx: int = 256,
    width: int = 64,
    layers: int = 2,
    seed: int = 0,
) -> Path:
    """Write a random-init model of `arch` with a freshly trained BPE tokenizer to `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    marker = out / "tiny.json"
    spec = dict(arch=arch, vocab_size=vocab_size, n_ctx=n_ctx, width=width, layers=layers, seed=seed)
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return out  # already built with the same spec
    train_bpe(stdlib_sources(), out, vocab_size=vocab_size, model_max_length=n_ctx)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    config = tiny_config(arch, len(tokenizer), n_ctx=n_ctx, width=width, layers=layers)
    config.fim_template = "codecomplete"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out)
    marker.write_text(json.dumps(spec))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch", choices=ARCHITECTURES)
    parser.add_argument("out_dir")
    parser.add_argument("--vocab-size", type=int, default=512)
    args = parser.parse_args(argv)
    print(build_tiny_model(args.arch, args.out_dir, vocab_size=args.vocab_size))


if __name__ == "__main__":
    main()

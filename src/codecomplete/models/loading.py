"""Load any Hugging Face causal LM folder for serving: device and dtype picked, eval mode.

model, tokenizer, device, dtype = load_for_inference("models/tiny-gpt2", device="auto")
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device")
    return device


def resolve_dtype(dtype: str, device: str):
    """float32 on the CPU by default: this project's CPUs (avx512f, no avx512_bf16) run bf16 matmuls
    slower than float32 (measured in BENCHMARKS.md), and float32 keeps batch invariance exact."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_for_inference(
    path: str, device: str = "auto", dtype: str = "auto", attn_implementation: str | None = None
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    tokenizer = AutoTokenizer.from_pretrained(path)
    kwargs = {"dtype": torch_dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.to(dev)
    model.eval()
    log.info(
        "loaded %s on %s as %s (attention: %s)", path, dev, torch_dtype, model.config._attn_implementation
    )
    return model, tokenizer, dev, torch_dtype

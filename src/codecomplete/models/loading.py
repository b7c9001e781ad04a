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


def resolve_dtype(dtype: str, device: str, hidden: int | None = None):
    """ "auto": bf16 (or fp16) on CUDA; on the CPU bf16 only where it is measured faster for this
    model's width (a CPU with AMX or avx512_bf16, `cpu_prefers_bf16`), float32 otherwise: on an
    AVX2-only CPU a bf16 matmul was measured 50x slower, and float32 keeps batch invariance exact."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if hidden and cpu_prefers_bf16(hidden) else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def cpu_bf16_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return {"amx_bf16", "avx512_bf16"} & set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_prefers_bf16(hidden: int, margin: float = 1.5) -> bool:
    """True when this CPU has bf16 instructions and a decode-sized matmul of this width
    ((64, hidden) x (hidden, 4 hidden)) runs at least `margin` times faster in bf16."""
    import time

    import torch

    flags = cpu_bf16_flags()
    # Below ~1k wide a matmul takes microseconds and a busy machine's noise decides the race
    # (measured: a 64-wide model flipped to bf16 in 1 process of 5, changing its outputs), so
    # narrow models stay float32 unless the CPU has AMX tiles.
    if not flags or ("amx_bf16" not in flags and hidden < 1024):
        return False

    # Interleaved, best of 20 each: a busy machine slows some runs, never speeds one up.
    xs = {d: torch.randn(64, hidden, dtype=d) for d in (torch.float32, torch.bfloat16)}
    ws = {d: torch.randn(hidden, 4 * hidden, dtype=d) for d in (torch.float32, torch.bfloat16)}
    best = dict.fromkeys(xs, float("inf"))
    for _ in range(20):
        for d in xs:
            t0 = time.perf_counter()
            xs[d] @ ws[d]
            best[d] = min(best[d], time.perf_counter() - t0)
    fp32, bf16 = best[torch.float32], best[torch.bfloat16]
    log.info(
        "cpu %s: a %d-wide matmul takes %.3f ms in float32, %.3f ms in bf16",
        "/".join(sorted(flags)),
        hidden,
        fp32 * 1e3,
        bf16 * 1e3,
    )
    return bf16 * margin < fp32


def load_for_inference(
    path: str, device: str = "auto", dtype: str = "auto", attn_implementation: str | None = None
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    hidden = None
    if dtype == "auto" and dev == "cpu":
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(path)
        hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None)
    torch_dtype = resolve_dtype(dtype, dev, hidden)
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

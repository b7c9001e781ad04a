"""Batch invariance on the CPU: row-wise attention and GEMM-friendly Linear weights.

Batched attention over left-padded keys reduces each row over the batch's padded width, and CPU
kernels round differently with that width (measured: logits 1e-6 apart between a sequence alone
and the same sequence in a mixed batch, enough to change a seeded sample now and then). This
implementation cuts every row down to its own real keys and queries and runs SDPA on exactly the
shapes the sequence would have alone, so a sequence's numbers never depend on its neighbours.

Registered with transformers' AttentionInterface under NAME; families whose attention goes through
that interface (GPT-2, GPTBigCode, Llama, Qwen2, and CodeGen since transformers 5) use it. GPT-Neo
has its own attention code (local windows) and keeps it on the dynamic cache.

`transpose_linear_weights`: nn.Linear computes x @ W.t(); with W stored (out, in) row-major, the
CPU GEMM picks kernels by the number of rows M and rows come out different for M=2 vs M=3
(measured, bias-free Linear layers and tied LM heads). Storing each weight column-major (W.t()
contiguous) makes every M >= 2 give bit-identical rows. Same values, same memory, no copy at run
time; a tied LM head gets its own copy so the embedding keeps its layout. Inputs are made
contiguous too: the LM head sees a strided (B, 1, C) slice of the last positions in a prefill, and
a strided input takes another kernel path (measured: 1.5e-7 off).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NAME = "codecomplete_rowwise"
_registered = False


def register() -> str:
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(NAME, rowwise_attention)
        AttentionMaskInterface.register(NAME, sdpa_mask)  # boolean (B, 1, Tq, Tk), True = attend
        _registered = True
    return NAME


def rowwise_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """query (B, H, Tq, D); key/value (B, Hkv, Tk, D); returns (B, Tq, H, D), None."""
    b, h, tq, _ = query.shape
    tk = key.shape[2]
    gqa = key.shape[1] != h
    out = query.new_zeros((b, tq, h, value.shape[-1]))
    if attention_mask is None:
        starts = [0] * b
    else:
        allowed = attention_mask if attention_mask.dtype == torch.bool else attention_mask == 0
        last = allowed[:, 0, -1, :]  # (B, Tk): the newest query sees exactly its row's real keys
        starts = torch.where(last.any(dim=1), last.int().argmax(dim=1), tk).tolist()
    for i, start in enumerate(starts):
        q_start = max(0, start - (tk - tq))  # queries at padding positions are skipped
        nq, nk = tq - q_start, tk - start
        if nq <= 0 or nk <= 0:
            continue
        q = query[i : i + 1, :, q_start:]
        k = key[i : i + 1, :, start:]
        v = value[i : i + 1, :, start:]
        mask, causal = None, False
        if nq > 1:
            if nq == nk:
                causal = True
            else:  # bottom-right aligned causal mask (queries are the last nq positions)
                mask = torch.ones((nq, nk), dtype=torch.bool, device=query.device).tril(diagonal=nk - nq)
        o = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, scale=scaling, enable_gqa=gqa
        )
        out[i, q_start:] = o[0].transpose(0, 1)
    return out, None


def transpose_linear_weights(model) -> int:
    """Re-lay every nn.Linear weight column-major (see the module docstring). Returns how many."""
    count = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.weight.is_contiguous():
                module.weight = torch.nn.Parameter(module.weight.t().contiguous().t(), requires_grad=False)
                module.register_forward_pre_hook(_contiguous_input)
                count += 1
    return count


def _contiguous_input(module, args):
    return (args[0].contiguous(), *args[1:])

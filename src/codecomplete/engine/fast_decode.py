"""A lean one-token decode step for the slot cache: the model's own weights, plain tensor ops.

On a small model the decode step is not arithmetic: a Hugging Face forward of the bundled 7M GPT-2
at batch 1 spends most of its ~4.5 ms in module calls, config lookups, mask building and an SDPA
call with a boolean mask that takes the slow path on the CPU (profiled: at batch 16 that SDPA call
alone was a third of the step). This module runs the same computation for one new token per row
as a straight sequence of tensor ops over the slot cache's tensors (engine/slot_runner.py):

- the linear layers call exactly what the model's own modules call (`addmm` with the Conv1D
  weights, `F.linear` with the LM head), so the GEMMs give the same bits as the model;
- attention for one query is two batched matmuls over the first W cached columns of each row,
  with the columns past a row's end masked to -inf (exact zeros after the softmax), so a row's
  numbers do not depend on the other rows of the batch (tests/engine/test_generation.py);
- several tokens per row (a prompt, a keystroke's new tokens, a speculative draft) go through
  `prefill`, the same code with a causal mask per row; `exact=True` attends once per position
  with the one-token step's kernels, so its logits are a one-token step's to the bit.

`build(model, cache)` returns a decoder for the families written here (GPT-2; GPTBigCode with
multi-query attention, as StarCoder/SantaCoder use it; Llama and Qwen2 without sliding windows;
CodeGen, fauxpilot's models; GPT-Neo with its local-window layers), or None: the slot runner then decodes through the model's forward as
before. `CODECOMPLETE_FAST_DECODE=0` turns it off (a debugging switch; the tests compare both).
"""

from __future__ import annotations

import logging
import math
import os

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


def enabled() -> bool:
    return os.environ.get("CODECOMPLETE_FAST_DECODE", "1") not in ("0", "false", "no")


def writes(cfg) -> bool:
    """Whether this module has a decoder for a model of this config (family and options)."""
    if not enabled():
        return False
    kind = cfg.model_type
    if kind in ("llama", "qwen2"):
        return "sliding_attention" not in (getattr(cfg, "layer_types", None) or ())  # Qwen2's windows
    if kind == "gpt2":
        return not (
            cfg.scale_attn_by_inverse_layer_idx or cfg.reorder_and_upcast_attn or cfg.add_cross_attention
        )
    if kind == "gpt_bigcode":  # per-head interleaved QKV (multi_query false): not written here
        return bool(cfg.multi_query) and not getattr(cfg, "add_cross_attention", False)
    if kind == "gpt_neo":
        return set(cfg.attention_layers) <= {"global", "local"}
    return kind == "codegen"


_DECODERS = {
    "llama": "LlamaDecoder",
    "qwen2": "LlamaDecoder",
    "codegen": "CodeGenDecoder",
    "gpt_neo": "GPTNeoDecoder",
}


def build(model, cache, compile: bool = False, max_rows: int = 1, columns=None):
    """A decoder for `model` over `cache` (a SlotCache), or None when this family is not written
    here or its config asks for something this path does not do. compile: wrap it in
    CompiledDecoder (call its warm_up() before the first request); columns: the runner's rounding
    of an attention width (for CUDA graphs' padded rows)."""
    cfg = model.config
    if not writes(cfg):
        return None
    try:
        decoder = globals()[_DECODERS.get(cfg.model_type, "GPT2Decoder")](model, cache)
    except (AttributeError, ValueError) as exc:  # an unexpected module layout: keep the model's forward
        log.info("fast decode off for %s: %s", cfg.model_type, exc)
        return None
    if compile:
        return CompiledDecoder(decoder, cache.layers[0].k.device, max_rows, columns=columns)
    return decoder


class SlotDecoder:
    """What the family decoders share. The slot runner calls a decoder for one token per row
    (`__call__`) and its `prefill` for several; each family writes `forward` (one token per row:
    what `--compile` compiles), `_prefill_hidden` (several) and `_final_norm`."""

    def __init__(self, model, cache):
        self.cache = cache
        self.head = model.get_output_embeddings()

    @torch.inference_mode()
    def __call__(
        self, ids: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor, first: int | None
    ) -> torch.Tensor:
        """ids, pos, slots: (B,) the token each row feeds, its position and its cache slot; first:
        slots are first..first+B-1 (the cache is read as a view), or None (they are gathered: a
        lone row and its ghost twin share one slot). The caller has set the cache's `flat_index`
        and `width`. Returns logits (B, V)."""
        c = self.cache
        if first is None:  # gathered rows: _attend_one reads their slot numbers on the host, so
            slots = slots.cpu()  # one copy per step on a GPU, not a sync per layer
        return self.forward(ids, pos, slots, first, c.width, c.flat_index)

    def forward(self, ids, pos, slots, first: int | None, width: int, flat: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def prefill(
        self,
        ids: torch.Tensor,
        pos: torch.Tensor,
        keep: torch.Tensor,
        first: int,
        context: int,
        exact: bool = False,
        shapes: list[tuple[int, int]] | None = None,
    ) -> torch.Tensor:
        """Several tokens per row at once (a prompt, or the few new tokens of a keystroke whose
        prefix came from the cache). ids, pos: (B, q), padding at position `context` (the cache's
        trash column); rows in slots first..first+B-1; the caller has set the cache's `flat_index`
        (B, H, q order) and `width`. keep: (B, k) the input positions whose logits are wanted.
        Returns logits (B, k, V).

        shapes: each row's (tokens, width) when prefilled alone: rows attend on their own shapes
        (`_attend_many`), so a prompt's numbers do not depend on the longer ones beside it.
        exact: attend for each input position on its own, with the one-token step's kernels
        (`_attend_one`), so the logits at every position have the bits a one-token step at that
        position would give in a batch (speculative decoding of sampled rows, whose seeded
        tokens must not change). Without it a row's q queries go through one GEMM per head,
        which rounds differently from the one-token step's GEMV (1e-5 apart, measured)."""
        b, q = ids.shape
        c = self.cache
        x = self._prefill_hidden(ids, pos, first, context, exact, shapes, c.width, c.flat_index)
        return self._logits(_kept(x.view(b, q, -1), keep))

    def _prefill_hidden(self, ids, pos, first: int, context: int, exact: bool, shapes, width, flat):
        """The last block's output (B * q, C) for prefill's inputs, their KV written to the cache
        (at `flat`, the cache's flat index; attention over its first `width` columns)."""
        raise NotImplementedError

    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._final_norm(x).contiguous())


class GPT2Decoder(SlotDecoder):
    """GPT-2 and GPTBigCode: learned positions, pre-LayerNorm blocks, fused QKV projection."""

    def __init__(self, model, cache):
        cfg = model.config
        t = model.transformer
        super().__init__(model, cache)
        self.wte, self.wpe, self.ln_f = t.wte.weight, t.wpe.weight, _norm_args(t.ln_f)
        self.hidden = cfg.hidden_size if hasattr(cfg, "hidden_size") else cfg.n_embd
        self.heads = cfg.num_attention_heads
        self.head_dim = self.hidden // self.heads
        self.kv_heads = 1 if getattr(cfg, "multi_query", False) else self.heads
        self.scale = 1.0 / math.sqrt(self.head_dim) if getattr(cfg, "scale_attn_weights", True) else 1.0
        self.layers = []
        for block in t.h:
            attn, mlp = block.attn, block.mlp
            for lin in (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj):
                if lin.weight.dim() != 2:
                    raise ValueError("unexpected projection weights")
            self.layers.append(
                (
                    (block.ln_1.weight, block.ln_1.bias, block.ln_1.eps),
                    _projection(attn.c_attn),
                    _projection(attn.c_proj),
                    (block.ln_2.weight, block.ln_2.bias, block.ln_2.eps),
                    _projection(mlp.c_fc),
                    mlp.act,  # gelu_new is already torch's fused kernel (fuse_activations)
                    _projection(mlp.c_proj),
                )
            )
        self.layers = _one_per_cache_layer(self.layers, cache)

    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), *self.ln_f[:2], self.ln_f[2])

    def forward(self, ids, pos, slots, first: int | None, width: int, flat: torch.Tensor) -> torch.Tensor:
        hd, h, kvh = self.head_dim, self.heads, self.kv_heads
        x = F.embedding(ids, self.wte) + F.embedding(pos, self.wpe)  # (B, C)
        hide = _hidden_columns(pos, width)
        for (ln1, qkv_proj, out_proj, ln2, fc, act, fc_out), layer in zip(
            self.layers, self.cache.layers, strict=True
        ):
            a = F.layer_norm(x, (x.shape[-1],), *ln1[:2], ln1[2])
            qkv = qkv_proj(a)  # (B, (H + 2 * KVH) * D)
            q, k, v = qkv.split((h * hd, kvh * hd, kvh * hd), dim=1)
            o = _attend_one(layer, q, k, v, flat, slots, first, width, hide, self.scale, h, kvh, hd)
            x = out_proj(o) + x
            m = F.layer_norm(x, (x.shape[-1],), *ln2[:2], ln2[2])
            x = fc_out(act(fc(m))) + x
        return self._logits(x)

    def _prefill_hidden(self, ids, pos, first: int, context: int, exact: bool, shapes, width, flat):
        b, q = ids.shape
        hd, h, kvh = self.head_dim, self.heads, self.kv_heads
        x = F.embedding(ids, self.wte) + F.embedding(pos.clamp(max=context - 1), self.wpe)  # (B, q, C)
        x = x.view(b * q, -1)
        hide = None if exact else _hidden_block(pos, width, h // kvh)
        for (ln1, qkv_proj, out_proj, ln2, fc, act, fc_out), layer in zip(
            self.layers, self.cache.layers, strict=True
        ):
            a = F.layer_norm(x, (x.shape[-1],), *ln1[:2], ln1[2])
            qkv = qkv_proj(a)  # (B * q, (H + 2 * KVH) * D)
            qs, k, v = qkv.split((h * hd, kvh * hd, kvh * hd), dim=1)
            keys, values = _store_many(
                layer, k.reshape(b, q, kvh, hd), v.reshape(b, q, kvh, hd), flat, first, width
            )
            o = _attend_many(
                qs.view(b, q, h * hd), keys, values, pos, hide, self.scale, h, kvh, hd, exact, shapes
            )
            x = out_proj(o) + x
            m = F.layer_norm(x, (x.shape[-1],), *ln2[:2], ln2[2])
            x = fc_out(act(fc(m))) + x
        return x


class LlamaDecoder(SlotDecoder):
    """Llama and Qwen2: rotary positions, RMSNorm, SwiGLU, grouped KV heads, separate q/k/v
    projections (Qwen2's with biases). The norms, the rotary table and the activation are the
    model's own modules and the rotation is Llama's formula, so the numbers are the model's."""

    def __init__(self, model, cache):
        cfg = model.config
        inner = model.model
        super().__init__(model, cache)
        self.embed = inner.embed_tokens.weight
        self.norm = inner.norm
        self.rotary = inner.rotary_emb
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads or cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.scale = self.head_dim**-0.5
        self.layers = []
        for layer in inner.layers:
            a, m = layer.self_attn, layer.mlp
            if getattr(a, "sliding_window", None):
                raise ValueError("sliding-window attention")
            self.layers.append(
                (
                    layer.input_layernorm,
                    _projection(a.q_proj),
                    _projection(a.k_proj),
                    _projection(a.v_proj),
                    _projection(a.o_proj),
                    layer.post_attention_layernorm,
                    _projection(m.gate_proj),
                    _projection(m.up_proj),
                    m.act_fn,
                    _projection(m.down_proj),
                )
            )
        self.layers = _one_per_cache_layer(self.layers, cache)

    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)

    def forward(self, ids, pos, slots, first: int | None, width: int, flat: torch.Tensor) -> torch.Tensor:
        b = ids.shape[0]
        hd, h, kvh = self.head_dim, self.heads, self.kv_heads
        x = F.embedding(ids, self.embed)  # (B, C)
        cos, sin = self.rotary(x[:, None], position_ids=pos[:, None])  # (B, 1, D)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        hide = _hidden_columns(pos, width)
        for (ln1, q_proj, k_proj, v_proj, o_proj, ln2, gate, up, act, down), layer in zip(
            self.layers, self.cache.layers, strict=True
        ):
            a = ln1(x)
            q = _rotate(q_proj(a).view(b, h, hd), cos, sin)
            k = _rotate(k_proj(a).view(b, kvh, hd), cos, sin)
            o = _attend_one(layer, q, k, v_proj(a), flat, slots, first, width, hide, self.scale, h, kvh, hd)
            x = o_proj(o) + x
            m = ln2(x)
            x = down(act(gate(m)) * up(m)) + x
        return self._logits(x)

    def _prefill_hidden(self, ids, pos, first: int, context: int, exact: bool, shapes, width, flat):
        b, q = ids.shape
        hd, h, kvh = self.head_dim, self.heads, self.kv_heads
        x = F.embedding(ids, self.embed).view(b * q, -1)  # (B * q, C)
        # The rotary table as b * q one-token rows: the same numbers as the one-token step's.
        cos, sin = self.rotary(x[:, None], position_ids=pos.clamp(max=context - 1).reshape(-1, 1))
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # (B * q, 1, D)
        hide = None if exact else _hidden_block(pos, width, h // kvh)
        for (ln1, q_proj, k_proj, v_proj, o_proj, ln2, gate, up, act, down), layer in zip(
            self.layers, self.cache.layers, strict=True
        ):
            a = ln1(x)
            qs = _rotate(q_proj(a).view(b * q, h, hd), cos, sin)
            k = _rotate(k_proj(a).view(b * q, kvh, hd), cos, sin).view(b, q, kvh, hd)
            keys, values = _store_many(layer, k, v_proj(a).view(b, q, kvh, hd), flat, first, width)
            o = _attend_many(
                qs.view(b, q, h * hd), keys, values, pos, hide, self.scale, h, kvh, hd, exact, shapes
            )
            x = o_proj(o) + x
            m = ln2(x)
            x = down(act(gate(m)) * up(m)) + x
        return x


class CodeGenDecoder(SlotDecoder):
    """CodeGen (Salesforce's codegen-*-mono/multi, the models fauxpilot serves): GPT-J's block,
    attention and MLP side by side on one LayerNorm's output, a fused QKV projection laid out in
    four model-parallel parts of (query, value, key), and rotary positions on the first
    `rotary_dim` dimensions of each head with GPT-J's interleaved pairs. The sinusoid table is
    the model's own buffer, and the sums run in the model's order, so the numbers are its own."""

    MP_PARTS = 4  # transformers' CodeGenAttention.mp_num: the checkpoints' QKV layout

    def __init__(self, model, cache):
        cfg = model.config
        t = model.transformer
        super().__init__(model, cache)
        self.wte = t.wte.weight
        self.ln_f = _norm_args(t.ln_f)
        self.table = t.rotary_emb.embed_positions  # (positions, rotary dims): sin half, cos half
        self.hidden = cfg.n_embd
        self.heads = cfg.n_head
        self.head_dim = self.hidden // self.heads
        self.rotary = cfg.rotary_dim or self.head_dim
        if self.hidden % self.MP_PARTS or self.rotary % 2 or self.rotary > self.head_dim:
            raise ValueError("unexpected CodeGen layout")
        self.kv_heads = self.heads
        self.scale = self.head_dim**-0.5
        layers = []
        for block in t.h:
            attn, mlp = block.attn, block.mlp
            if getattr(attn, "mp_num", self.MP_PARTS) != self.MP_PARTS:
                raise ValueError("unexpected QKV partitioning")
            qkv, out, fc_in, fc_out = map(_projection, (attn.qkv_proj, attn.out_proj, mlp.fc_in, mlp.fc_out))
            layers.append((_norm_args(block.ln_1), qkv, out, fc_in, mlp.act, fc_out))
        self.layers = _one_per_cache_layer(layers, cache)

    def _qkv(self, proj, a: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor):
        """a (N, C) -> q, k, v (N, H, D), q and k rotated at each row's position."""
        n, local = a.shape[0], self.hidden // self.MP_PARTS
        q, v, k = proj(a).view(n, self.MP_PARTS, 3 * local).split(local, dim=-1)
        shape = (n, self.heads, self.head_dim)
        return (
            _rotate_pairs(q.reshape(shape), sin, cos, self.rotary),
            _rotate_pairs(k.reshape(shape), sin, cos, self.rotary),
            v.reshape(shape),
        )

    def _sincos(self, pos: torch.Tensor):
        """(N,) positions -> sin, cos (N, 1, rotary) with each frequency twice (GPT-J's pairs)."""
        sin, cos = self.table[pos].split(self.rotary // 2, dim=-1)
        return sin.repeat_interleave(2, -1)[:, None], cos.repeat_interleave(2, -1)[:, None]

    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), *self.ln_f[:2], self.ln_f[2])

    def forward(self, ids, pos, slots, first: int | None, width: int, flat: torch.Tensor) -> torch.Tensor:
        hd, h = self.head_dim, self.heads
        x = F.embedding(ids, self.wte)  # (B, C)
        sin, cos = self._sincos(pos)
        hide = _hidden_columns(pos, width)
        for (ln1, qkv_proj, out_proj, fc_in, act, fc_out), layer in zip(
            self.layers, self.cache.layers, strict=True
        ):
            a = F.layer_norm(x, (x.shape[-1],), *ln1[:2], ln1[2])
            q, k, v = self._qkv(qkv_proj, a, sin, cos)
            o = _attend_one(layer, q, k, v, flat, slots, first, width, hide, self.scale, h, h, hd)
            x = out_proj(o) + fc_out(act(fc_in(a))) + x
        return self._logits(x)

    def _prefill_hidden(self, ids, pos, first: int, context: int, exact: bool, shapes, width, flat):
        b, q = ids.shape
        hd, h = self.head_dim, self.heads
        x = F.embedding(ids, self.wte).view(b * q, -1)  # (B * q, C)
        sin, cos = self._sincos(pos.clamp(max=context - 1).reshape(-1))  # as b * q one-token rows
        hide = None if exact else _hidden_block(pos, width, 1)
        for (ln1, qkv_proj, out_proj, fc_in, act, fc_out), layer in zip(
            self.layers, self.cache.layers, strict=True
        ):
            a = F.layer_norm(x, (x.shape[-1],), *ln1[:2], ln1[2])
            qs, k, v = self._qkv(qkv_proj, a, sin, cos)
            keys, values = _store_many(layer, k.view(b, q, h, hd), v.view(b, q, h, hd), flat, first, width)
            o = _attend_many(
                qs.view(b, q, h * hd), keys, values, pos, hide, self.scale, h, h, hd, exact, shapes
            )
            x = out_proj(o) + fc_out(act(fc_in(a))) + x
        return x


class GPTNeoDecoder(SlotDecoder):
    """GPT-Neo: GPT-2's pre-LayerNorm block with separate q/k/v projections (no biases), no
    scaling of the attention scores, and layers that alternate global attention with local
    attention over the last `window_size` positions (a query at p sees keys p - window + 1 .. p,
    which is what the model's own banded causal mask allows)."""

    def __init__(self, model, cache):
        cfg = model.config
        t = model.transformer
        super().__init__(model, cache)
        self.wte, self.wpe, self.ln_f = t.wte.weight, t.wpe.weight, _norm_args(t.ln_f)
        self.heads = cfg.num_heads
        self.head_dim = cfg.hidden_size // cfg.num_heads
        self.kv_heads = self.heads
        layers = []
        for block, kind in zip(t.h, cfg.attention_layers, strict=True):
            attn, mlp = block.attn.attention, block.mlp
            q, k, v, out = map(_projection, (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj))
            fc, fc_out = _projection(mlp.c_fc), _projection(mlp.c_proj)
            window = cfg.window_size if kind == "local" else None
            layers.append(
                (_norm_args(block.ln_1), q, k, v, out, _norm_args(block.ln_2), fc, mlp.act, fc_out, window)
            )
        self.layers = _one_per_cache_layer(layers, cache)

    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), *self.ln_f[:2], self.ln_f[2])

    def forward(self, ids, pos, slots, first: int | None, width: int, flat: torch.Tensor) -> torch.Tensor:
        hd, h = self.head_dim, self.heads
        x = F.embedding(ids, self.wte) + F.embedding(pos, self.wpe)  # (B, C)
        hide = {None: _hidden_columns(pos, width)}  # a lone row's local layers need their band
        for (ln1, q_proj, k_proj, v_proj, out_proj, ln2, fc, act, fc_out, window), layer in zip(
            self.layers, self.cache.layers, strict=True
        ):
            if window not in hide:
                hide[window] = _columns_past(pos, width, window)
            a = F.layer_norm(x, (x.shape[-1],), *ln1[:2], ln1[2])
            o = _attend_one(
                layer, q_proj(a), k_proj(a), v_proj(a), flat, slots, first, width, hide[window], 1.0, h, h, hd
            )
            x = out_proj(o) + x
            m = F.layer_norm(x, (x.shape[-1],), *ln2[:2], ln2[2])
            x = x + fc_out(act(fc(m)))
        return self._logits(x)

    def _prefill_hidden(self, ids, pos, first: int, context: int, exact: bool, shapes, width, flat):
        b, q = ids.shape
        hd, h = self.head_dim, self.heads
        x = F.embedding(ids, self.wte) + F.embedding(pos.clamp(max=context - 1), self.wpe)  # (B, q, C)
        x = x.view(b * q, -1)
        hide: dict = {}
        for (ln1, q_proj, k_proj, v_proj, out_proj, ln2, fc, act, fc_out, window), layer in zip(
            self.layers, self.cache.layers, strict=True
        ):
            if not exact and window not in hide:
                hide[window] = _hidden_block(pos, width, 1, window)
            a = F.layer_norm(x, (x.shape[-1],), *ln1[:2], ln1[2])
            k, v = k_proj(a).view(b, q, h, hd), v_proj(a).view(b, q, h, hd)
            keys, values = _store_many(layer, k, v, flat, first, width)
            o = _attend_many(
                q_proj(a).view(b, q, h * hd),
                keys,
                values,
                pos,
                hide.get(window),
                1.0,
                h,
                h,
                hd,
                exact,
                shapes,
                window,
            )
            x = out_proj(o) + x
            m = F.layer_norm(x, (x.shape[-1],), *ln2[:2], ln2[2])
            x = x + fc_out(act(fc(m)))
        return x


def _norm_args(ln) -> tuple:
    """A LayerNorm module's (weight, bias, eps), for F.layer_norm."""
    return ln.weight, ln.bias, ln.eps


def _one_per_cache_layer(layers: list, cache) -> list:
    if len(layers) != len(cache.layers):
        raise ValueError("the cache and the model have different numbers of layers")
    return layers


def _rotate_pairs(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, dims: int) -> torch.Tensor:
    """GPT-J's rotary embedding of the first `dims` of each head of x (N, H, D): dimensions
    (2i, 2i + 1) rotate together; sin/cos (N, 1, dims)."""
    rot = x[..., :dims]
    pairs = torch.stack((-rot[..., 1::2], rot[..., ::2]), dim=-1).flatten(-2)
    rot = rot * cos + pairs * sin
    return rot if dims == x.shape[-1] else torch.cat([rot, x[..., dims:]], dim=-1)


def _store_many(layer, k: torch.Tensor, v: torch.Tensor, flat: torch.Tensor, first: int, width: int):
    """Write several tokens' keys/values per row, k and v (B, q, KVH, D), into the slot cache at
    the flat index (laid out (B, KVH, q)); return the rows' first `width` cached columns (B, KVH,
    W, D) of keys and of values (views)."""
    b, hd = k.shape[0], k.shape[-1]
    layer.k.view(-1, hd).index_copy_(0, flat, k.transpose(1, 2).reshape(-1, hd))
    layer.v.view(-1, hd).index_copy_(0, flat, v.transpose(1, 2).reshape(-1, hd))
    return layer.k[first : first + b, :, :width], layer.v[first : first + b, :, :width]


def _kept(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """x (B, q, C) at the input positions keep (B, k): (B, k, C)."""
    return x.gather(1, keep[:, :, None].expand(-1, -1, x.shape[-1]))


PV_BLOCK = 256  # columns per block of a grouped-head p @ V (_attend): well inside the widths where
# appending zero columns keeps the GEMM's bits (up to 384, measured)


def _hidden_block(pos: torch.Tensor, width: int, group: int, window: int | None = None) -> torch.Tensor:
    """(B, 1, G * q, W): for a multi-token step, the columns each query must not see (past its
    own position, and with a local `window`, window or more positions before it). Query rows are
    (head in group, position), as `_attend_many` lays them out."""
    cols = torch.arange(width, device=pos.device)
    hide = cols[None, None, :] > pos[:, :, None]  # (B, q, W)
    if window is not None:  # padding (at the trash column, past the width) keeps every column
        hide = hide | ((cols[None, None, :] <= pos[:, :, None] - window) & (pos[:, :, None] < width))
    hide = hide[:, None]  # (B, 1, q, W)
    return hide.repeat(1, 1, group, 1) if group > 1 else hide


def _attend_many(
    qs, keys, values, pos, hide, scale, h, kvh, hd, exact: bool, shapes=None, window: int | None = None
) -> torch.Tensor:
    """Several queries per row: qs (B, q, H*D) over the rows' cached keys/values (B, KVH, W, D),
    already written. exact: each position attends on its own with the one-token step's kernels
    (`_attend`, the columns past that position hidden), so its numbers are a one-token step's to
    the bit; otherwise one GEMM per head takes a row's queries together (faster; rounds
    differently, 1e-5). shapes: [(tokens, width)] per row: each row attends on its own, with the
    shapes it has alone (the CPU kernels round differently with the batch's padded rows and
    width once they pass a few hundred: tests/engine/test_long_invariance.py), padding rows of
    the output left zero. Returns (B * q, H*D)."""
    b, q, _ = qs.shape
    if exact:
        outs = [
            _attend(
                qs[:, j], keys, values, _columns_past(pos[:, j], keys.shape[2], window), scale, h, kvh, hd
            )
            for j in range(q)
        ]
        return torch.stack(outs, dim=1).view(b * q, h * hd)
    if shapes is not None and b > 1:
        out = qs.new_zeros((b, q, h * hd))
        for i, (n, w) in enumerate(shapes):
            row_pos = pos[i : i + 1, :n]
            o = _attend_many(
                qs[i : i + 1, :n],
                keys[i : i + 1, :, :w],
                values[i : i + 1, :, :w],
                row_pos,
                _hidden_block(row_pos, w, h // kvh, window),
                scale,
                h,
                kvh,
                hd,
                False,
            )
            out[i, :n] = o
        return out.view(b * q, h * hd)
    g = h // kvh
    qs = qs.reshape(b, q, kvh, g, hd).permute(0, 2, 3, 1, 4).reshape(b, kvh, g * q, hd)
    scores = torch.matmul(qs, keys.transpose(-1, -2)).mul_(scale)  # (B, KVH, G * q, W)
    scores = scores.masked_fill_(hide, float("-inf")).softmax(dim=-1)
    o = torch.matmul(scores, values)  # (B, KVH, G * q, D)
    return o.view(b, kvh, g, q, hd).permute(0, 3, 1, 2, 4).reshape(b * q, h * hd)


def _hidden_columns(pos: torch.Tensor, width: int) -> torch.Tensor | None:
    """(B, 1, 1, W): the cached columns past each row's end, which its query must not see. None
    for a lone row, which the runner reads to exactly its own length."""
    return None if pos.shape[0] == 1 else _columns_past(pos, width)


def _columns_past(pos: torch.Tensor, width: int, window: int | None = None) -> torch.Tensor:
    """(B, 1, 1, W): for one query per row at positions pos (B,), the columns past it (and with a
    local `window`, those window or more positions before it; padding past the width keeps all)."""
    cols = torch.arange(width, device=pos.device)
    hide = cols[None, :] > pos[:, None]
    if window is not None:
        hide = hide | ((cols[None, :] <= pos[:, None] - window) & (pos[:, None] < width))
    return hide[:, None, None, :]


def _attend_one(layer, q, k, v, flat, slots, first, width, hide, scale, h, kvh, hd) -> torch.Tensor:
    """One new token per row: write its key/value into the slot cache at the row's position
    (`flat`), then attend over the first `width` columns of the row's slot. q (B, H*D) or
    (B, H, D); k, v (B, KVH*D) or (B, KVH, D); hide (B, 1, 1, W) marks the columns past each
    row's end, or is None when every column is the row's own (a lone row read to its exact
    length). Query head j reads KV head j // (H / KVH). Returns (B, H*D)."""
    b = q.shape[0]
    layer.k.view(-1, hd).index_copy_(0, flat, k.reshape(-1, hd))
    layer.v.view(-1, hd).index_copy_(0, flat, v.reshape(-1, hd))
    if first is not None:
        keys = layer.k[first : first + b, :, :width]  # (B, KVH, W, D): a view
        values = layer.v[first : first + b, :, :width]
    elif b == 2 and int(slots[0]) == int(slots[1]):
        # A lone row and its ghost twin: one slot, the same query twice. Attend once over a view
        # of the slot and give both rows the result: gathering the slot twice cost ~370 us a
        # layer against ~50 for one row at 300 columns, a third of a sampled lone request's
        # step. Each row is its own batch element of the attention's matmuls, so the row gets
        # the same bits (checked for widths 1-1023 with and without masked columns, 1 to 8
        # query heads per KV head); copied, not expanded, as the projection's GEMM reads it.
        s = int(slots[0])
        keys, values = layer.k[s : s + 1, :, :width], layer.v[s : s + 1, :, :width]
        one = _attend(q[:1], keys, values, None if hide is None else hide[:1], scale, h, kvh, hd)
        return one.repeat(2, 1)
    else:
        keys, values = layer.k[slots, :, :width], layer.v[slots, :, :width]
    return _attend(q, keys, values, hide, scale, h, kvh, hd)


def _attend(q, keys, values, hide, scale, h, kvh, hd) -> torch.Tensor:
    """One query per row over its cached keys/values (B, KVH, W, D), columns in `hide` masked.
    Returns (B, H*D)."""
    b = q.shape[0]
    q = q.reshape(b, kvh, h // kvh, hd)
    scores = torch.matmul(q, keys.transpose(-1, -2)).mul_(scale)  # (B, KVH, G, W)
    if hide is not None:
        scores = scores.masked_fill_(hide, float("-inf"))
    p = scores.softmax(dim=-1)
    width = p.shape[-1]
    if kvh == h or width <= PV_BLOCK:  # one query per KV head (a GEMV), or a short row: one GEMM
        return torch.matmul(p, values).reshape(b, h * hd)
    # G query heads per KV head make p @ V a G-row GEMM, and the CPU's GEMM changes its last bits
    # when zero columns are appended past ~400 (measured: torch 2.13's CPU build, G = 2..8), which a
    # batch's width does to a shorter row. Blocks of PV_BLOCK columns, summed in order, give a row
    # the same bits at any width: the blocks past its end add exact zeros.
    o = torch.matmul(p[..., :PV_BLOCK], values[:, :, :PV_BLOCK])
    for start in range(PV_BLOCK, width, PV_BLOCK):
        o = o + torch.matmul(p[..., start : start + PV_BLOCK], values[:, :, start : start + PV_BLOCK])
    return o.reshape(b, h * hd)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Llama's rotary embedding of x (B, heads, D) at each row's position (cos/sin (B, 1, D))."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos) + (rotated * sin)


class TanhGELU(torch.nn.Module):
    """torch's fused tanh-approximation GELU, in place of transformers' NewGELUActivation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


def fuse_activations(model) -> int:
    """Replace every "gelu_new" activation module (GPT-2's, written as seven elementwise tensor
    ops) with torch's fused kernel of the same formula. Profiled on the bundled model, those
    seven passes over (tokens x 4C) were a third of a 16 x 128-token prefill. Returns how many
    were replaced."""
    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child).__name__ == "NewGELUActivation":
                setattr(module, name, TanhGELU())
                count += 1
    return count


def _projection(module):
    """x -> the module's output, with the call the module itself makes (Conv1D: addmm with its
    (in, out) weight; nn.Linear: F.linear), so the GEMM kernels and their bits are the same."""
    if isinstance(module, torch.nn.Linear):
        weight, bias = module.weight, module.bias
        return lambda x: F.linear(x, weight, bias)
    weight, bias = module.weight, module.bias  # transformers' Conv1D: y = x @ W + b, W (in, out)
    if weight.shape[0] != getattr(module, "nx", weight.shape[0]):
        raise ValueError("unexpected Conv1D layout")
    return lambda x: torch.addmm(bias, x, weight)


class CompiledDecoder:
    """The decoder's forward under `torch.compile` (issue 12's compiled decode step).

    On the CPU, Inductor fuses the elementwise work between the GEMMs (LayerNorms, GELU, the
    residual adds, the attention mask and softmax) into generated C++ loops and drops the
    per-op dispatch; the GEMMs stay the same library calls. Shapes are dynamic (rows, attention
    width, the first slot), so one graph serves every batch size above one and one more serves a
    lone row; `warm_up()` compiles both at startup. Static shapes recompiled for every new width
    and first slot: measured on the CPU with the bundled model, 45 s of recompiling in the first
    three requests, after which Dynamo's recompile limit (8) left the step uncompiled for good.

    `graphs` (default: on CUDA) captures the step as CUDA graphs (mode "reduce-overhead") with
    the rows padded up to a bucket (2, 4, 8, ..., max) and the width rounded up to the runner's
    step (a lone row is padded to two rows for that: its mask comes with the second row), so that
    only a few shapes are recorded, as vLLM does with its capture sizes. Not yet run on a GPU; on
    the CPU the same configuration compiles and runs without graphs, which the tests check.

    A lone row with its ghost twin (slots not consecutive) runs the eager decoder. When
    compilation fails, for a family or a platform, the decoder falls back to eager for good and
    says so in the log (`failed` holds why)."""

    def __init__(
        self,
        decoder: SlotDecoder,
        device: torch.device,
        max_rows: int,
        graphs: bool | None = None,
        columns=None,
    ):
        self.decoder = decoder
        self.graphs = device.type == "cuda" if graphs is None else graphs
        self.max_rows = max_rows
        self.columns = columns or (lambda end: end)  # the width padded rows attend over
        self.failed: str | None = None
        self.compiled = torch.compile(
            decoder.forward, dynamic=True, mode="reduce-overhead" if self.graphs else None
        )

    @property
    def cache(self):
        return self.decoder.cache

    def __call__(self, ids, pos, slots, first):
        if first is None or self.failed is not None:
            return self.decoder(ids, pos, slots, first)
        c = self.cache
        b = ids.shape[0]
        try:
            with torch.inference_mode():
                if self.graphs:
                    return self._bucketed(ids, pos, slots, first)[:b]
                return self.compiled(ids, pos, slots, first, c.width, c.flat_index)
        except Exception as exc:
            if not _is_compile_error(exc):
                raise  # the model failed on these rows: the engine's isolation handles it
            self._give_up(exc)
            return self.decoder(ids, pos, slots, first)

    def _bucketed(self, ids, pos, slots, first):
        """CUDA graphs replay fixed shapes: pad the rows to the next bucket with copies of the
        last row aimed at the slots after the batch (free at decode time: a prefill joining this
        step writes those slots after the decode). Padded rows are masked, so their width is
        rounded as a batch's (a lone row comes with its exact width, and keeps it when there is no
        slot after it to pad into)."""
        b = ids.shape[0]
        bucket = min(max(2, _bucket(b)), self.max_rows - first)
        if bucket > b:
            extra = bucket - b
            ids = torch.cat([ids, ids[-1:].expand(extra)])
            pos = torch.cat([pos, pos[-1:].expand(extra)])
            slots = torch.arange(first, first + bucket, device=slots.device)
            self.cache.locate(slots, pos[:, None])
            self.cache.width = self.columns(self.cache.width)
        return self.compiled(ids, pos, slots, first, self.cache.width, self.cache.flat_index)

    def warm_up(self, width: int = 64) -> float:
        """Compile (and on CUDA capture) before the first request. Writes garbage into the first
        slots' columns, which every prefill overwrites before anything reads them, so it must run
        before any request. Returns the seconds it took; 0 when compilation failed (logged)."""
        import time

        t0 = time.perf_counter()
        width = min(width, self.cache.layers[0].k.shape[2] - 1)  # (the last column is padding's)
        sizes = sorted(
            {1, 2, 3}
            if not self.graphs
            else {min(max(2, _bucket(n)), self.max_rows) for n in range(1, self.max_rows + 1)}
        )
        for n in sizes:
            if n > self.max_rows:
                continue
            dev = self.cache.layers[0].k.device
            with torch.inference_mode():  # the engine's tensors are inference tensors: same guards
                ids = torch.zeros(n, dtype=torch.long, device=dev)
                # at the width's last column: a lone row that is not padded attends to exactly its
                # own columns, and a width of 1 would be compiled as a constant
                pos = torch.full((n,), width - 1, dtype=torch.long, device=dev)
                slots = torch.arange(n, device=dev)
                self.cache.locate(slots, pos[:, None])
            self.cache.width = width
            self(ids, pos, slots, 0)
            if self.failed is not None:
                return 0.0
        return time.perf_counter() - t0

    def _give_up(self, exc: Exception) -> None:
        self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log.warning("compiled decode step failed, decoding without compilation from now on: %s", self.failed)


def _bucket(n: int) -> int:
    b = 1
    while b < n:
        b *= 2
    return b


def _is_compile_error(exc: Exception) -> bool:
    """Errors of torch.compile itself (Dynamo, Inductor, a missing C++ compiler), as opposed
    to errors of the computation, which the eager decoder would raise as well."""
    mod = type(exc).__module__ or ""
    if mod.startswith(("torch._dynamo", "torch._inductor", "torch.fx")):
        return True
    return (
        isinstance(exc, (ImportError, OSError, NotImplementedError))
        or "CppCompileError" in type(exc).__name__
    )

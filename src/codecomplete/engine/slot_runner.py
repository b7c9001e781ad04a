"""The slot runner: a static KV cache preallocated for every row of the batch (vLLM's shape).

The cache is one (S, heads, context + 1, head_dim) tensor of keys and one of values per layer,
S = max_batch_size + 1. Each running sequence owns a slot (a row of those tensors) and its tokens
sit at positions 0..n-1 of it, so joining, leaving and decoding never copy other rows:

- a decode step writes each row's new key/value at that row's own position (one index_put per
  layer) and attends over the first W columns of the running slots, W the longest row rounded up
  to a multiple of 64 (a view, no copy); a boolean mask (B, 1, q, W) lets a query at position p
  see keys 0..p of its own row;
- the running rows always fill slots 0..B-1: a row that leaves is replaced by the last row (one
  row's KV moved, `drop`), new rows are prefilled straight into the slots after them;
- a prefix-cache hit copies the cached KV into the new row's slot; an n > 1 fork copies one slot;
- the last slot is scratch space for chunked prefill (`extend`), whose KV lives outside the batch
  until the prompt is complete.

Batch invariance comes from the layout: a row's keys start at column 0 whatever else is in the
batch, and masked columns add exact zeros, so attention sees the same numbers in any batch.
Together with column-major Linear weights (attention.py) and never running a one-row GEMM (a lone
sampled sequence runs twice: `ghost`), a sequence's logits are bit-identical alone or in any
batch. Checked by tests/engine/test_generation.py.

Works for the families whose attention goes through transformers' AttentionInterface and that
take a 4D mask as given (GPT-2, GPTBigCode, Llama, Qwen2, CodeGen), and for GPT-Neo, whose own
attention code (local windows) cannot read this cache, through fast_decode.py alone (every prompt,
draft and decode step goes through its decoder there). runner.py's ModelRunner keeps the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.cache_utils import Cache

from codecomplete.engine.runner import KV, PrefillRow

NAME = "codecomplete_slots"
SUPPORTED = ("gpt2", "gpt_bigcode", "llama", "qwen2", "codegen")
DECODER_ONLY = ("gpt_neo",)  # no model forward over this cache: only where fast_decode writes it
WIDTH_STEP = 64  # attention width granularity (columns past a row's end are masked)
_registered = False


def register() -> str:
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(NAME, slot_attention)
        # A direct call of the model (not through the runner) gets transformers' usual mask.
        AttentionMaskInterface.register(NAME, sdpa_mask)
        _registered = True
    return NAME


def supports(model) -> bool:
    kind = model.config.model_type
    if kind in DECODER_ONLY:
        from codecomplete.engine import fast_decode

        return fast_decode.writes(model.config)
    return kind in SUPPORTED and getattr(model, "_supports_attention_backend", False)


def slot_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """query (B, H, q, D); key/value (B, Hkv, W, D); mask (B, 1, q, W) bool. Returns (B, q, H, D).
    Without a mask (a direct call of the model that transformers let skip it) it is causal."""
    out = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        is_causal=attention_mask is None and query.shape[2] > 1,
        scale=scaling,
        enable_gqa=key.shape[1] != query.shape[1],
    )
    return out.transpose(1, 2), None


class SlotLayer:
    """One layer's slice of the static cache, as transformers' attention modules call it."""

    is_sliding = False
    is_compileable = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, owner: SlotCache):
        self.k, self.v, self.owner = keys, values, owner
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        """key_states (B, Hkv, q, D): written at each row's positions; returns the keys and values
        attention reads: the first W columns of the forward's slots."""
        o = self.owner
        d = self.k.shape[-1]
        # One index_copy_ per tensor into the flat (S * H * T, D) view: an advanced-index
        # assignment k[rows, :, pos] = ... took ~15% of a decode step (profiled).
        self.k.view(-1, d).index_copy_(0, o.flat_index, key_states.reshape(-1, d))
        self.v.view(-1, d).index_copy_(0, o.flat_index, value_states.reshape(-1, d))
        if o.first is not None:  # slots first..first+B-1: a view
            b = key_states.shape[0]
            return self.k[o.first : o.first + b, :, : o.width], self.v[o.first : o.first + b, :, : o.width]
        return self.k[o.rows, :, : o.width], self.v[o.rows, :, : o.width]


class SlotCache(Cache):
    """The static cache handed to the model. `rows`, `write_pos`, `width` and `first` describe the
    forward pass in flight (set by the runner before each call)."""

    def __init__(self, layers: list[SlotLayer]):  # noqa: D107 - Cache.__init__ wants a config
        self.layers = layers
        self.rows: torch.Tensor | None = None  # (B,) slot of each input row
        self.write_pos: torch.Tensor | None = None  # (B, q) cache column of each input token
        self.width = 0
        self.first: int | None = None  # rows are first..first+B-1 (contiguous), else None
        self.flat_index: torch.Tensor | None = None  # (B * H * q,) rows of the flat K/V views

    def locate(self, rows: torch.Tensor, write_pos: torch.Tensor) -> None:
        """Where this forward's keys/values go: slot rows[b], column write_pos[b, i], per head."""
        _, h, t, _ = self.layers[0].k.shape
        heads = torch.arange(h, device=rows.device)
        flat = (rows[:, None, None] * h + heads[None, :, None]) * t + write_pos[:, None, :]  # (B, H, q)
        self.rows, self.write_pos, self.flat_index = rows, write_pos, flat.reshape(-1)

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        return self.layers[layer_idx].update(key_states, value_states)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.width

    def __len__(self) -> int:
        return len(self.layers)


@dataclass
class SlotBatch:
    """The running batch: row i lives in slot i (i < rows)."""

    seqs: list[Any]
    pos: torch.Tensor  # (B,) tokens cached per row = position of the next input token
    next_ids: torch.Tensor  # (B,) the token each row feeds next
    first: int = 0  # first slot (0 for the running batch; a fresh prefill's starts after it)
    ghost: bool = False  # a lone row runs twice (one-row GEMMs round differently)

    def __len__(self) -> int:
        return self.pos.shape[0]

    @property
    def rows(self) -> int:
        return self.pos.shape[0]

    def set_next(self, tokens: list[int]) -> None:
        self.next_ids = torch.tensor(tokens, dtype=torch.long, device=self.next_ids.device)


class SlotRunner:
    """Same interface as runner.ModelRunner, over the static slot cache."""

    def __init__(self, model, device, max_rows: int, pad_id: int = 0, compile: bool = False):
        self.model = model
        self.device = torch.device(device)
        self.pad_id = pad_id
        register()
        # The model's own forward runs over this cache only where its attention takes it.
        self.model_forward = model.config.model_type not in DECODER_ONLY
        if self.model_forward and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(NAME)
        elif self.model_forward:
            model.config._attn_implementation = NAME
        self.base = model.base_model
        self.head = model.get_output_embeddings()
        cfg = model.config
        self.context = _context(cfg)
        self.scratch = max_rows  # the last slot
        heads, head_dim = kv_layout(cfg)
        dtype = next(model.parameters()).dtype
        shape = (max_rows + 1, heads, self.context + 1, head_dim)  # + 1 column: padding's trash
        self.cache = SlotCache([])
        self.cache.layers = [
            SlotLayer(
                torch.zeros(shape, dtype=dtype, device=self.device),
                torch.zeros(shape, dtype=dtype, device=self.device),
                self.cache,
            )
            for _ in range(cfg.num_hidden_layers)
        ]
        self.bytes = 2 * cfg.num_hidden_layers * _prod(shape) * torch.empty((), dtype=dtype).element_size()
        import inspect

        params = inspect.signature(self.base.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        from codecomplete.engine import fast_decode

        # One-token steps without the model's forward where the family is written (fast_decode.py).
        self.fast = fast_decode.build(
            model, self.cache, compile=compile, max_rows=max_rows, columns=self._columns
        )
        if self.fast is None and not self.model_forward:
            raise ValueError(f"no decode step for {model.config.model_type} over the slot cache")
        # Prompts too, through the decoder's multi-token step (every family fast_decode.py writes).
        decoder = getattr(self.fast, "decoder", self.fast)
        self._fast_prefill = getattr(decoder, "prefill", None)
        # verify(exact=True) gives the bits of one-token steps: only where both run the same eager
        # kernels (the family has a multi-token step and the one-token step is not compiled).
        self.exact_verify = self._fast_prefill is not None and decoder is self.fast

    # --- forward passes ---------------------------------------------------------------------

    def _run(self, ids, rows, pos, keep) -> torch.Tensor:
        """ids, pos: (B, q); rows: (B,) slots; keep: (B, k) input positions whose logits are
        wanted. Returns logits (B, k, V)."""
        if not self.model_forward:  # callers route these families through the decoder
            raise RuntimeError("this family's forward cannot read the slot cache")
        c = self.cache
        b, q = ids.shape
        width = self._width(pos)
        c.locate(rows, pos)
        c.width = width
        first = int(rows[0])
        c.first = first if self._consecutive(rows) else None
        cols = torch.arange(width, device=self.device)
        mask = cols[None, None, :] <= pos[:, :, None]  # (B, q, W): a query sees keys up to itself
        kwargs = {self._cache_arg: c}
        out = self.base(
            input_ids=ids,
            attention_mask=mask[:, None],
            position_ids=pos.clamp(max=self.context - 1),
            use_cache=True,
            **kwargs,
        )
        hidden = out[0]  # (B, q, C)
        picked = hidden.gather(1, keep[:, :, None].expand(-1, -1, hidden.shape[-1]))
        return self.head(picked.contiguous())

    @torch.inference_mode()
    def decode(self, batch: SlotBatch) -> torch.Tensor:
        """One token for every row. Returns logits (B, V). A failed forward leaves the batch as
        it was (what it wrote lies past each row's end)."""
        logits = self._decode(batch, list(range(batch.rows)))
        batch.pos = batch.pos + 1
        return logits

    def _decode(self, batch: SlotBatch, rows: list[int]) -> torch.Tensor:
        idx = torch.tensor(rows, dtype=torch.long, device=self.device)
        slots = idx + batch.first
        ids, pos = batch.next_ids[idx], batch.pos[idx]
        n = len(rows)
        if n == 1 and batch.ghost:  # the same row twice: a two-row GEMM, as in any batch
            slots, ids, pos = slots.repeat(2), ids.repeat(2), pos.repeat(2)
        if self.fast is not None:
            return self._fast_decode(ids, slots, pos)[:n]
        keep = torch.zeros((slots.shape[0], 1), dtype=torch.long, device=self.device)
        logits = self._run(ids[:, None], slots, pos[:, None], keep)
        return logits[:n, 0]

    @torch.inference_mode()
    def verify(self, batch: SlotBatch, drafts: list[list[int]], exact: bool = False) -> torch.Tensor:
        """Speculative decoding (engine/speculate.py): feed every row its next token and its
        draft in one forward. Returns logits (B, 1 + W, V) for W = the longest draft, [i, j]
        predicting the token after row i's input j (inputs past a row's draft are padding, their
        logits meaningless). The KV of the inputs lies past each row's end until accept() keeps
        some of it; what is not kept is never read (a row attends only to its own columns below
        its end) and later tokens overwrite it. The caller keeps pos + 1 + len(draft) <= context.

        exact (needs `exact_verify`): [i, j] has the bits a one-token step would give row i at
        that position in a batch, so sampled rows draw the tokens they would draw without
        drafts. A lone row needs no ghost twin here: 1 + W >= 2 inputs already make its GEMMs
        multi-row."""
        if exact and not self.exact_verify:
            raise ValueError("this runner has no exact multi-token step")
        rows = [[nxt, *draft] for nxt, draft in zip(batch.next_ids.tolist(), drafts, strict=True)]
        ids, pos = self._pack(rows, batch.pos.tolist())
        b, q = ids.shape
        slots = torch.arange(batch.first, batch.first + b, device=self.device)
        keep = torch.arange(q, device=self.device)[None].expand(b, q)
        if exact:
            return self._fast_prefill_run(ids, slots, pos, keep, exact=True)
        return self._forward(ids, slots, pos, keep)

    def _pack(self, rows: list[list[int]], starts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token rows of different lengths as (R, W) ids and positions on the device: row i's
        tokens at positions starts[i], starts[i] + 1, ...; after a row's end, pad_id written to
        the trash column `context`."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        pos = torch.full((len(rows), width), self.context, dtype=torch.long)
        for i, (tokens, s) in enumerate(zip(rows, starts, strict=True)):
            ids[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            pos[i, : len(tokens)] = torch.arange(s, s + len(tokens))
        return ids.to(self.device), pos.to(self.device)

    def _forward(self, ids, slots, pos, keep, fast: bool = True, shapes=None) -> torch.Tensor:
        """Several tokens per row: the family's own multi-token step (fast_decode.py) when it has
        one and the slots are consecutive (and `fast`), else the model's forward. shapes: each
        row's (tokens, width) alone, for the multi-token step to attend per row. (B, k, V)."""
        if (fast or not self.model_forward) and self._fast_prefill is not None and self._consecutive(slots):
            return self._fast_prefill_run(ids, slots, pos, keep, shapes=shapes)
        return self._run(ids, slots, pos, keep)

    def accept(self, batch: SlotBatch, fed: list[int], next_ids: list[int]) -> None:
        """After verify(): the first fed[i] inputs of row i are its own now (their KV stays), and
        next_ids[i] is the token it feeds next."""
        batch.pos = batch.pos + torch.tensor(fed, dtype=torch.long, device=batch.pos.device)
        batch.set_next(next_ids)

    def _width(self, pos: torch.Tensor) -> int:
        """Cache columns a forward attends over: the furthest real position + 1, rounded up to
        WIDTH_STEP (padding sits at the trash column `context` and does not count)."""
        real = pos[pos < self.context]
        return self._columns(int(real.max()) + 1 if real.numel() else 1)

    def _columns(self, end: int) -> int:
        """The attention width for positions below `end`: end rounded up to WIDTH_STEP."""
        return min(self.context, _round_up(end, WIDTH_STEP))

    @staticmethod
    def _consecutive(slots) -> bool:
        """Slots first, first+1, ...: the cache rows can be read as one view."""
        first = int(slots[0])
        return torch.equal(slots, torch.arange(first, first + slots.shape[0], device=slots.device))

    def _fast_prefill_run(self, ids, slots, pos, keep, exact: bool = False, shapes=None) -> torch.Tensor:
        """Several tokens per row through fast_decode.py's multi-token step."""
        c = self.cache
        c.width = self._width(pos)
        c.locate(slots, pos)
        return self._fast_prefill(ids, pos, keep, int(slots[0]), self.context, exact=exact, shapes=shapes)

    def _fast_decode(self, ids, slots, pos) -> torch.Tensor:
        """One token per row through fast_decode.py (no model forward). Logits (B, V)."""
        c = self.cache
        c.locate(slots, pos[:, None])
        if slots.shape[0] == 1:  # a lone row (no ghost twin): its own columns exactly, no mask
            c.width = int(pos[0]) + 1
        else:
            c.width = self._width(pos)
        return self.fast(ids, pos, slots, int(slots[0]) if self._consecutive(slots) else None)

    @torch.inference_mode()
    def probe(self, batch: SlotBatch, rows: list[int]) -> None:
        """Decode `rows` of the batch without keeping anything: raises what they raise alone."""
        ghost = batch.ghost
        batch.ghost = len(rows) == 1
        try:
            self._decode(batch, rows)
        finally:
            batch.ghost = ghost

    @torch.inference_mode()
    def prefill(self, rows: list[PrefillRow], first: int = 0):
        """Prefill new sequences into slots first, first+1, ... Returns (batch, last-position
        logits (R, V), {row: full logits (T, V)} for the rows that asked for them)."""
        lengths, starts = [len(r.ids) for r in rows], [r.reuse for r in rows]
        for i, r in enumerate(rows):
            if r.reuse:
                self._fill(first + i, r.kv, r.reuse)
        slots = torch.arange(first, first + len(rows), device=self.device)
        full = {i: r for i, r in enumerate(rows) if r.full_logits}
        logits, full_logits = self._prefill_into(slots, [r.ids for r in rows], starts, set(full))
        pos = torch.tensor(lengths, dtype=torch.long, device=self.device)
        batch = SlotBatch([], pos, pos.clone(), first=first)
        return batch, logits, full_logits

    def _prefill_into(self, slots, prompts, starts, full: set[int]):
        r = len(prompts)
        ids, pos = self._pack([p[s:] for p, s in zip(prompts, starts, strict=True)], starts)
        width = ids.shape[1]
        keep_n = 2 if r == 1 and not full else 1  # a lone row keeps two positions: a 2-row GEMM
        keep = torch.zeros((r, width if full else keep_n), dtype=torch.long)
        for i, (p, s) in enumerate(zip(prompts, starts, strict=True)):
            n = len(p) - s
            if full:
                keep[i] = torch.arange(width).clamp(max=n - 1)
            else:
                keep[i] = torch.arange(n - keep_n, n).clamp(min=0)
        # Each prompt's attention on the shapes it has alone (its tokens, its width), so a prompt's
        # numbers do not depend on the longer ones beside it (fast_decode._attend_many).
        shapes = [(len(p) - s, self._columns(len(p))) for p, s in zip(prompts, starts, strict=True)]
        logits = self._forward(
            ids, slots, pos, keep.to(self.device), fast=not full, shapes=shapes
        )  # (R, k, V)
        last = torch.tensor([len(p) - s - 1 for p, s in zip(prompts, starts, strict=True)])
        if full:
            out = logits[torch.arange(r), last.to(self.device)]
            return out, {i: logits[i, : len(prompts[i]) - starts[i]] for i in full}
        return logits[:, -1], {}

    @torch.inference_mode()
    def extend(self, kv: KV | None, start: int, ids: list[int]) -> KV:
        """Chunked prefill: run `ids` after the first `start` tokens' KV (in the scratch slot) and
        return the KV of all start + len(ids) tokens."""
        s = self.scratch
        if start:
            self._fill(s, kv, start)
        slots = torch.tensor([s], device=self.device)
        self._prefill_into(slots, [[0] * start + list(ids)], [start], set())
        n = start + len(ids)
        return [
            (layer.k[s : s + 1, :, :n].clone(), layer.v[s : s + 1, :, :n].clone())
            for layer in self.cache.layers
        ]

    def _fill(self, slot: int, kv: KV, n: int) -> None:
        for layer, (k, v) in zip(self.cache.layers, kv, strict=True):
            layer.k[slot, :, :n] = k[0, :, :n]
            layer.v[slot, :, :n] = v[0, :, :n]

    # --- batch bookkeeping ------------------------------------------------------------------

    def prefix_kv(self, batch: SlotBatch, row: int, length: int) -> KV:
        s, end = batch.first + row, int(batch.pos[row])
        return [
            (
                layer.k[s : s + 1, :, end - length : end].clone(),
                layer.v[s : s + 1, :, end - length : end].clone(),
            )
            for layer in self.cache.layers
        ]

    def _copy(self, dst: int, src: int, n: int) -> None:
        for layer in self.cache.layers:
            layer.k[dst, :, :n] = layer.k[src, :, :n]
            layer.v[dst, :, :n] = layer.v[src, :, :n]

    def select(self, batch: SlotBatch, rows: list[int], ghost: bool = True) -> SlotBatch:
        """Rows `rows` (repeats allowed: n > 1 forks), in that order, in slots batch.first, ...
        Copies the rows that move (a prefill's forks; never the running batch's other rows)."""
        n = max(int(batch.pos.max()), 1)
        src = [batch.first + r for r in rows]
        if src != list(range(batch.first, batch.first + len(rows))):
            idx = torch.tensor(src, device=self.device)
            dst = slice(batch.first, batch.first + len(rows))
            for layer in self.cache.layers:
                layer.k[dst, :, :n] = layer.k[idx, :, :n]
                layer.v[dst, :, :n] = layer.v[idx, :, :n]
        idx = torch.tensor(rows, dtype=torch.long, device=self.device)
        return SlotBatch(
            [batch.seqs[r] for r in rows] if batch.seqs else [],
            batch.pos[idx],
            batch.next_ids[idx],
            first=batch.first,
            ghost=ghost and len(rows) == 1,
        )

    def drop(self, batch: SlotBatch, keep: list[int], ghost: bool = True) -> SlotBatch:
        """Rows leave: each hole below the new end is filled by a row from above it (its KV
        moved); the other rows stay where they are. Row order follows the slots."""
        order = list(range(batch.rows))
        kept = set(keep)
        end = len(keep)
        holes = [r for r in range(end) if r not in kept]
        movers = [r for r in keep if r >= end]
        for hole, mover in zip(holes, movers, strict=True):
            self._copy(batch.first + hole, batch.first + mover, int(batch.pos[mover]))
            order[hole] = mover
        order = order[:end]
        idx = torch.tensor(order, dtype=torch.long, device=self.device)
        return SlotBatch(
            [batch.seqs[r] for r in order],
            batch.pos[idx],
            batch.next_ids[idx],
            first=batch.first,
            ghost=ghost and end == 1,
        )

    def concatenate(self, batches: list[SlotBatch]) -> SlotBatch:
        """Batches in consecutive slots (a running batch and the prefill after it): no copy."""
        batches = [b for b in batches if b.rows]
        if len(batches) == 1:
            return batches[0]
        for a, b in zip(batches, batches[1:], strict=False):
            if a.first + a.rows != b.first:
                raise RuntimeError("slot batches must be consecutive")
        return SlotBatch(
            [s for b in batches for s in b.seqs],
            torch.cat([b.pos for b in batches]),
            torch.cat([b.next_ids for b in batches]),
            first=batches[0].first,
        )


def kv_layout(cfg) -> tuple[int, int]:
    """(key/value heads, head dim) of a model config: its KV heads for grouped-query attention,
    one for GPTBigCode's multi-query attention, else one per attention head."""
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    if getattr(cfg, "multi_query", False):  # GPTBigCode
        heads = 1
    return heads, getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


def _context(cfg) -> int:
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError("the model config gives no context length")


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def _round_up(x: int, step: int) -> int:
    return (x + step - 1) // step * step

"""The model runner: the only engine module that touches torch and the model.

A running batch (TGI's `Batch`) is a left-padded Hugging Face DynamicCache plus its attention mask
and explicit position ids, so every family that returns a DynamicCache of (B, heads, T, head_dim)
layers works: GPT-2, GPT-Neo, CodeGen, GPTBigCode (one KV head), Llama, Qwen2. Sequences join with
`concatenate` (left-pad to the longest and stack) and leave with `select` (index the rows and drop
the padding columns nobody needs any more).

Batch invariance: a CPU matmul with a single row (M=1) takes a GEMV path that rounds differently
from the GEMM used for 2+ rows (measured: 4e-5 apart; every M >= 2 gives bit-identical rows). So a
batch never runs with one row: a lone sequence gets a "ghost" copy of itself, and one-token
forwards are run on two identical rows. With eager attention (left padding only ever adds exact
zeros in front of a reduction) a sequence's logits are then the same bits whatever else is in the
batch.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values, each (B, H, T, D)


def _slack(width: int) -> int:
    return 32 + width // 2


class SlackLayer(DynamicLayer):
    """A DynamicLayer whose keys/values are views of a larger buffer: `update` writes the new
    token in place instead of DynamicLayer's torch.cat, which copies the whole cache every step
    (a quarter of a decode step on the CPU at batch 16, measured)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, width: int | None = None, extra: int = 0):
        super().__init__()
        b, h, t, _ = keys.shape
        width = t if width is None else width  # left-pad up to `width` when joining a wider batch
        cap = width + max(_slack(width), extra + 32)
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        # Padding must be zeros (some families' own attention multiplies masked values by 0, and
        # garbage could be NaN); the slack after the end is never read before it is written.
        self._k = keys.new_empty((b, h, cap, keys.shape[-1]))
        self._v = values.new_empty((b, h, cap, values.shape[-1]))
        self._k[:, :, : width - t].zero_()
        self._v[:, :, : width - t].zero_()
        self._k[:, :, width - t : width] = keys
        self._v[:, :, width - t : width] = values
        self._n = width
        self._views()

    def _views(self) -> None:
        self.keys = self._k[:, :, : self._n]
        self.values = self._v[:, :, : self._n]

    def update(self, key_states, value_states, *args, **kwargs):
        n = key_states.shape[-2]
        if self._n + n > self._k.shape[2]:
            grow = _slack(self._n + n) + n
            self._k = torch.cat(
                [self._k[:, :, : self._n], self._k.new_zeros((*self._k.shape[:2], grow, self._k.shape[3]))], 2
            )
            self._v = torch.cat(
                [self._v[:, :, : self._n], self._v.new_zeros((*self._v.shape[:2], grow, self._v.shape[3]))], 2
            )
        self._k[:, :, self._n : self._n + n] = key_states
        self._v[:, :, self._n : self._n + n] = value_states
        self._n += n
        self._views()
        return self.keys, self.values


@dataclass
class Batch:
    seqs: list[Any]  # one Sequence per row, same order as the tensors
    cache: DynamicCache
    mask: torch.Tensor  # (B, T) 1 = real token in the cache, 0 = left padding
    pos: torch.Tensor  # (B,) position id of the next input token = real tokens cached
    next_ids: torch.Tensor  # (B,) the token each row feeds next (sampled, not yet cached)
    ghost: bool = False  # the last tensor row duplicates row 0 (a batch of one sequence)

    def __len__(self) -> int:
        return self.mask.shape[0]

    @property
    def rows(self) -> int:
        """Real rows (the tensors may hold one ghost row more)."""
        return self.mask.shape[0] - int(self.ghost)

    def set_next(self, tokens: list[int]) -> None:
        ids = tokens + tokens[:1] if self.ghost else tokens
        self.next_ids = torch.tensor(ids, dtype=torch.long, device=self.next_ids.device)

    @property
    def width(self) -> int:
        return self.mask.shape[1]


@dataclass
class PrefillRow:
    ids: list[int]
    reuse: int = 0  # leading tokens whose KV is given in `kv`
    kv: KV | None = None  # cached prefix, (1, H, >=reuse, D) per layer
    full_logits: bool = False  # echo + logprobs: keep every position's logits


def _layers(cache: DynamicCache):
    return cache.layers


def _stack(layers: list, width: int, sizes: list[int]) -> SlackLayer:
    """One SlackLayer holding the first `sizes[i]` rows of `layers[i]` (the same layer of several
    batches) stacked, left-padded to `width`."""
    first = layers[0]
    k0, v0 = first.keys, first.values
    b = sum(sizes)
    out = SlackLayer(
        k0.new_zeros((b, *k0.shape[1:2], 0, k0.shape[3])),
        v0.new_zeros((b, *v0.shape[1:2], 0, v0.shape[3])),
        width,
    )
    row = 0
    for layer, size in zip(layers, sizes, strict=True):
        t = layer.keys.shape[2]
        out._k[row : row + size, :, width - t : width] = layer.keys[:size]
        out._v[row : row + size, :, width - t : width] = layer.values[:size]
        row += size
    return out


def _cache_from(kv: KV, n: int, extra: int) -> DynamicCache:
    """A cache holding the first n tokens of `kv` (one copy), with room for `extra` more."""
    cache = DynamicCache()
    cache.layers = [SlackLayer(k[:, :, :n], v[:, :, :n], extra=extra) for k, v in kv]
    return cache


class ModelRunner:
    def __init__(self, model, device: torch.device | str, pad_id: int = 0):
        self.model = model
        self.device = torch.device(device)
        self.pad_id = pad_id
        params = inspect.signature(model.forward).parameters
        self._keep_arg = "logits_to_keep" in params

    # --- forward passes ---------------------------------------------------------------------

    def _forward(self, ids, mask, pos, cache, last_only: bool):
        plain = cache is None or not any(isinstance(layer, SlackLayer) for layer in _layers(cache))
        if ids.numel() == 1 and plain:  # one row, one token: run it twice (see the module docstring)
            if cache is not None:
                for layer in _layers(cache):
                    layer.keys, layer.values = (
                        layer.keys.expand(2, -1, -1, -1),
                        layer.values.expand(2, -1, -1, -1),
                    )
            logits, cache = self._forward_raw(
                ids.expand(2, -1), mask.expand(2, -1), pos.expand(2, -1), cache, last_only
            )
            for layer in _layers(cache):
                layer.keys, layer.values = layer.keys[:1], layer.values[:1]
            return logits[:1], cache
        return self._forward_raw(ids, mask, pos, cache, last_only)

    def _forward_raw(self, ids, mask, pos, cache, last_only: bool):
        kwargs = dict(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        if cache is not None:
            kwargs["past_key_values"] = cache
        if last_only and self._keep_arg:
            # Two positions for a lone row: the LM head then runs as a GEMM, like in any batch.
            kwargs["logits_to_keep"] = 2 if ids.shape[0] == 1 and ids.shape[1] > 1 else 1
        out = self.model(**kwargs)
        return out.logits, out.past_key_values

    @torch.inference_mode()
    def decode(self, batch: Batch) -> torch.Tensor:
        """One token for every row. Returns logits (B, V). If the forward raises, the batch is left
        as it was before the call (the layers already written get their length back), so the
        caller can retry it, or parts of it."""
        ones = torch.ones((len(batch), 1), dtype=batch.mask.dtype, device=self.device)
        mask = torch.cat([batch.mask, ones], dim=1)  # (B, T+1)
        layers = list(_layers(batch.cache))
        lengths = [getattr(layer, "_n", None) for layer in layers]
        try:
            logits, cache = self._forward(
                batch.next_ids[:, None], mask, batch.pos[:, None], batch.cache, True
            )
        except Exception:
            for layer, n in zip(layers, lengths, strict=True):
                if n is not None:
                    layer._n = n
                    layer._views()
            batch.cache.layers = layers
            raise
        batch.cache, batch.mask = cache, mask
        batch.pos = batch.pos + 1
        return logits[: batch.rows, -1, :]

    @torch.inference_mode()
    def prefill(
        self, rows: list[PrefillRow], first: int = 0
    ) -> tuple[Batch, torch.Tensor, dict[int, torch.Tensor]]:
        """Run the prompts of new sequences (`first` is the slot runner's; unused here). Returns their batch (rows in the given order, `seqs`
        left for the caller to fill), last-position logits (R, V), and full logits (T, V) for the
        rows that asked for them."""
        plain = [i for i, r in enumerate(rows) if r.reuse == 0 and not r.full_logits]
        solo = [i for i, r in enumerate(rows) if r.reuse > 0 or r.full_logits]
        parts: list[tuple[list[int], Batch, torch.Tensor]] = []
        full: dict[int, torch.Tensor] = {}
        if plain:
            batch, logits = self._prefill_padded([rows[i].ids for i in plain])
            parts.append((plain, batch, logits))
        for i in solo:
            batch, logits = self._prefill_one(rows[i])
            if rows[i].full_logits:
                full[i] = logits[0]
            parts.append(([i], batch, logits[:, -1, :]))
        order = [i for idx, _, _ in parts for i in idx]
        batch = self.concatenate([b for _, b, _ in parts])
        if not all(isinstance(layer, SlackLayer) for layer in _layers(batch.cache)):
            batch.cache.layers = [SlackLayer(layer.keys, layer.values) for layer in _layers(batch.cache)]
        logits = torch.cat([lg for _, _, lg in parts], dim=0)
        if order != list(range(len(rows))):
            inverse = [order.index(i) for i in range(len(rows))]
            batch = self.select(batch, inverse)
            logits = logits[inverse]
        return batch, logits, full

    @torch.inference_mode()
    def extend(self, kv: KV | None, start: int, ids: list[int]) -> KV:
        """Chunked prefill: run `ids` (prompt positions start..) after the first `start` tokens'
        KV and return the KV of all start + len(ids) tokens (no logits needed)."""
        cache = _cache_from(kv, start, len(ids)) if start else None
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        mask = torch.ones((1, start + len(ids)), dtype=torch.long, device=self.device)
        pos = torch.arange(start, start + len(ids), device=self.device)[None, :]
        _, cache = self._forward(x, mask, pos, cache, True)
        return [(layer.keys, layer.values) for layer in _layers(cache)]

    def _prefill_padded(self, prompts: list[list[int]]) -> tuple[Batch, torch.Tensor]:
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (R, T) padding gets position 0, masked anyway
        logits, cache = self._forward(ids, mask, pos, None, True)
        lengths = mask.sum(dim=1)
        return Batch([], cache, mask, lengths, lengths.clone()), logits[:, -1, :]

    def _prefill_one(self, row: PrefillRow) -> tuple[Batch, torch.Tensor]:
        n = row.reuse
        cache = _cache_from(row.kv, n, len(row.ids) - n) if n else None
        ids = torch.tensor([row.ids[n:]], dtype=torch.long, device=self.device)
        mask = torch.ones((1, len(row.ids)), dtype=torch.long, device=self.device)
        pos = torch.arange(n, len(row.ids), device=self.device)[None, :]
        logits, cache = self._forward(ids, mask, pos, cache, not row.full_logits)
        length = torch.tensor([len(row.ids)], device=self.device)
        return Batch([], cache, mask, length, length.clone()), logits

    @torch.inference_mode()
    def probe(self, batch: Batch, rows: list[int]) -> None:
        """Decode a copy of `rows` of the batch and throw the result away: raises what decoding
        those rows alone raises. The batch itself is not touched (finding which rows make a
        batched step fail)."""
        copy = DynamicCache()
        copy.layers = list(_layers(batch.cache))
        view = Batch(batch.seqs, copy, batch.mask, batch.pos, batch.next_ids, batch.ghost)
        self.decode(self.select(view, rows))

    # --- batch bookkeeping ------------------------------------------------------------------

    def prefix_kv(self, batch: Batch, row: int, length: int) -> KV:
        """A copy of row's KV for its last `length` cached tokens (right after prefill: the prompt)."""
        t = batch.width
        return [
            (
                layer.keys[row : row + 1, :, t - length :].clone(),
                layer.values[row : row + 1, :, t - length :].clone(),
            )
            for layer in _layers(batch.cache)
        ]

    def select(self, batch: Batch, rows: list[int], ghost: bool = True) -> Batch:
        """Keep (or repeat, for n > 1 forks) `rows`, in that order; drop all-padding columns.
        A single row gets its ghost unless ghost=False."""
        ghost = ghost and len(rows) == 1
        seqs = [batch.seqs[r] for r in rows] if batch.seqs else []
        if ghost:
            rows = rows * 2
        idx = torch.tensor(rows, dtype=torch.long, device=self.device)
        mask = batch.mask.index_select(0, idx)
        real = mask.any(dim=0).nonzero()
        start = int(real[0]) if len(real) else 0
        cache = batch.cache
        cache.layers = [
            SlackLayer(
                layer.keys[:, :, start:].index_select(0, idx), layer.values[:, :, start:].index_select(0, idx)
            )
            for layer in _layers(cache)
        ]
        return Batch(
            seqs,
            batch.cache,
            mask[:, start:],
            batch.pos.index_select(0, idx),
            batch.next_ids.index_select(0, idx),
            ghost=ghost,
        )

    def drop(self, batch: Batch, keep: list[int], ghost: bool = True) -> Batch:
        """Rows leave the batch (finished, cancelled): `select` of the rows that stay."""
        return self.select(batch, keep, ghost=ghost)

    def concatenate(self, batches: list[Batch]) -> Batch:
        batches = [b for b in batches if b.rows]
        if len(batches) == 1:
            return batches[0]
        width = max(b.width for b in batches)

        def pad(t: torch.Tensor, extra: int, dim: int) -> torch.Tensor:
            if not extra:
                return t
            shape = list(t.shape)
            shape[dim] = extra
            return torch.cat([t.new_zeros(shape), t], dim=dim)

        first = batches[0].cache
        first.layers = [
            _stack([_layers(b.cache)[li] for b in batches], width, [b.rows for b in batches])
            for li in range(len(_layers(first)))
        ]
        return Batch(  # two or more real rows: no ghost
            seqs=[s for b in batches for s in b.seqs],
            cache=first,
            mask=torch.cat([pad(b.mask[: b.rows], width - b.width, 1) for b in batches], dim=0),
            pos=torch.cat([b.pos[: b.rows] for b in batches]),
            next_ids=torch.cat([b.next_ids[: b.rows] for b in batches]),
        )

"""Token shards in, packed training sequences out, with FIM applied at training time.

The order is a pure function of (seed, sample index): a split's token stream (documents already
followed by end-of-text in the shards) is cut into chunks of `seq_len` tokens, each epoch visits the
chunks in a permutation seeded by (seed, epoch), and FIM choices use an rng seeded by (seed, index).
The sample indices of optimizer step s are [s x B, (s + 1) x B) with B the global batch, so a resumed
run sees exactly the batches the uninterrupted run would have seen, whatever the number of ranks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codecomplete.models.fim import FimTemplate

FORMAT = "codecomplete-tokens-v1"


def data_paths(path: str | Path | list) -> list[Path]:
    """The token dataset folders of `data.path`: one folder, or several separated by commas
    (`data/tiny-py/corpus/tokens,data/pypi-permissive/tokens`), read as one dataset."""
    parts = [str(p) for p in path] if isinstance(path, (list, tuple)) else str(path).split(",")
    roots = [Path(p.strip()).expanduser() for p in parts if p.strip()]
    if not roots:
        raise ValueError("data.path names no token dataset folder")
    return roots


class TokenShards:
    """One split of a token dataset (the token shard contract in HELPERS.md), as one flat stream.

    `root` may name several datasets (`data_paths`): their shards are read one after the other, in
    the order given, as one stream (and one split). They must share dtype, eos id and vocabulary
    size (token datasets written with one tokenizer); a dataset without the split adds nothing."""

    def __init__(self, root: str | Path | list, split: str):
        roots = data_paths(root)
        self.root = roots[0] if len(roots) == 1 else roots
        metas = [self._read_meta(r) for r in roots]
        first = metas[0]
        for r, m in zip(roots[1:], metas[1:], strict=True):
            for key in ("dtype", "eos_id", "vocab_size"):
                if m.get(key) != first.get(key):
                    raise ValueError(
                        f"{r}: {key} {m.get(key)!r} differs from {roots[0]}'s {first.get(key)!r}: "
                        "token datasets read together must be written with the same tokenizer"
                    )
        have = [(r, m) for r, m in zip(roots, metas, strict=True) if split in m["splits"]]
        if not have:
            names = sorted({s for m in metas for s in m["splits"]})
            raise ValueError(f"{self.root}: no split {split!r} (has {', '.join(names)})")
        if len(roots) == 1:
            self.meta = first
        else:  # one meta.json for the lot: the splits summed, shards as paths
            splits: dict = {}
            for r, m in zip(roots, metas, strict=True):
                for name, info in m["splits"].items():
                    s = splits.setdefault(name, {"num_documents": 0, "num_tokens": 0, "shards": []})
                    s["num_documents"] += int(info.get("num_documents", 0))
                    s["num_tokens"] += int(info.get("num_tokens", 0))
                    s["shards"] += [str(self._shard_path(r, name, n)) for n in info["shards"]]
            self.meta = {**first, "splits": splits, "sources": [str(r) for r in roots]}
        self.split = split
        self.info = self.meta["splits"][split]
        self.eos_id = int(first["eos_id"])
        self.vocab_size = int(first["vocab_size"])
        dtype = np.dtype(first["dtype"])
        self._shards: list[np.ndarray] = []
        for r, m in have:
            for name in m["splits"][split]["shards"]:
                self._shards.append(np.memmap(self._shard_path(r, split, name), dtype=dtype, mode="r"))
        sizes = np.array([len(s) for s in self._shards], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(sizes)])
        self.num_tokens = int(self._starts[-1])
        if self.num_tokens == 0:
            raise ValueError(f"{self.root}: split {split!r} has no tokens")

    @staticmethod
    def _read_meta(root: Path) -> dict:
        meta_path = root / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{root} has no meta.json: not a token dataset, or its writer has not finished"
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        return meta

    @staticmethod
    def _shard_path(root: Path, split: str, name: str) -> Path:
        path = root / split / name if not Path(name).is_absolute() else Path(name)
        if not path.suffix:
            path = path.with_suffix(".bin")
        if not path.exists() and (root / name).exists():
            path = root / name
        return path

    def read(self, start: int, length: int) -> np.ndarray:
        """`length` tokens from position `start` of the stream, wrapping around at its end."""
        out = np.empty(length, dtype=np.int64)
        filled = 0
        pos = start % self.num_tokens
        while filled < length:
            i = int(np.searchsorted(self._starts, pos, side="right")) - 1
            local = pos - int(self._starts[i])
            take = min(length - filled, len(self._shards[i]) - local)
            out[filled : filled + take] = self._shards[i][local : local + take]
            filled += take
            pos = (pos + take) % self.num_tokens
        return out


@dataclass
class FimAugmenter:
    """Turns documents into fill-in-the-middle examples, at character level as the server sees them.

    A document's text is cut at two random character positions into prefix / middle / suffix; the
    three parts are tokenised separately (as the server tokenises what a client sends) and joined by
    the template shared with serving (models/fim.py): PSM = <P> pre <S> suf <M> mid, SPM = <P> <S>
    suf <M> pre mid (Bavarian et al. 2022). Every middle ends with end-of-text: the document's own,
    or, for the document the training window cuts off, one added after its middle; that token
    is what tells a served model its middle has met the suffix (without it, the model learns that a
    middle runs on until the window ends, and at serving time writes until max_tokens).

    With `length` (the training window), an example that would not fit is shortened the way clients
    shorten what they send: the suffix loses its tail first, then the prefix its head; the middle is
    kept whole whenever it fits (as Megatron's context-level FIM does). The document the window
    cuts off is cut again at a random length before it is made an example, so its middle's
    end-of-text does not always fall on the window's last position (the caller tops the window up
    from the stream).
    """

    template: FimTemplate
    encode: Callable[[list[str]], list[list[int]]]
    decode: Callable[[list[int]], str]
    token_to_id: Callable[[str], int]
    eos_id: int
    rate: float
    spm_rate: float

    def __call__(self, tokens: np.ndarray, rng: np.random.Generator, length: int | None = None) -> np.ndarray:
        if self.rate <= 0:
            return tokens
        limit = len(tokens) if length is None else length
        ends = np.flatnonzero(tokens == self.eos_id)
        pieces, used, start = [], 0, 0
        for end in list(ends) + [len(tokens)]:
            body = tokens[start:end]
            closed = end < len(tokens)
            if len(body) > 1 and rng.random() < self.rate:
                room = limit - used - 1  # the end-of-text after the middle
                if not closed:
                    # The document runs on past the window. Filling the window, its example's
                    # end-of-text would always sit on the window's last position, and a model
                    # learns to end a middle only there (measured: the shipped model's run 4).
                    # So it ends at a random length (the caller tops the window up).
                    body = body[: int(rng.integers(2, len(body) + 1))]
                ids = self.permute(body.tolist(), rng, room if length is not None else None)
                if ids is not None:
                    body, closed = np.asarray(ids, dtype=np.int64), True
            pieces.append(body)
            if closed:
                pieces.append(np.asarray([self.eos_id], dtype=np.int64))
            used += len(body) + closed
            start = end + 1
        return np.concatenate(pieces) if pieces else tokens

    def permute(self, ids: list[int], rng: np.random.Generator, room: int | None = None) -> list[int] | None:
        """One document as a FIM example (without its end-of-text), at most `room` tokens when
        given: the suffix's tail, then the prefix's head are dropped to fit; None when not even
        the middle and the template fit."""
        text = self.decode(ids)
        lo, hi = sorted(int(x) for x in rng.integers(0, len(text) + 1, size=2))
        pre, mid, suf = self.encode([text[:lo], text[lo:hi], text[hi:]])
        order = "spm" if rng.random() < self.spm_rate else "psm"
        if room is not None:
            over = len(self.template.encode(pre, suf, self.token_to_id, order)) + len(mid) - room
            if over > len(pre) + len(suf):
                return None
            if over > 0:
                cut = min(over, len(suf))
                suf = suf[: len(suf) - cut]
                pre = pre[over - cut :]
        return self.template.encode(pre, suf, self.token_to_id, order) + mid


def fim_from_tokenizer(
    tokenizer, template: FimTemplate, eos_id: int, rate: float, spm_rate: float
) -> FimAugmenter:
    """A FimAugmenter over a `tokenizers.Tokenizer` (a fast HF tokenizer's `backend_tokenizer`) or the
    path of a tokenizer.json."""
    from tokenizers import Tokenizer

    tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.from_file(str(tokenizer))

    def token_to_id(t: str) -> int:
        i = tok.token_to_id(t)
        if i is None:
            raise ValueError(f"FIM template {template.name!r} needs token {t!r}, missing from the tokenizer")
        return i

    for t in template.special_tokens():
        token_to_id(t)  # fail at start, not at the first FIM example
    return FimAugmenter(
        template=template,
        encode=lambda texts: [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)],
        decode=lambda ids: tok.decode(ids, skip_special_tokens=False),
        token_to_id=token_to_id,
        eos_id=eos_id,
        rate=rate,
        spm_rate=spm_rate,
    )


class PackedSequences:
    """Sample k of a split: `seq_len` tokens, chosen and augmented as a pure function of (seed, k)."""

    def __init__(
        self,
        shards: TokenShards,
        seq_len: int,
        seed: int,
        fim: FimAugmenter | None = None,
        shuffle: bool = True,
        offset: int = 0,
    ):
        """Sample k is sample k + `offset` of the seed's order (data.start_sample)."""
        self.shards, self.seq_len, self.seed, self.fim, self.shuffle = shards, seq_len, seed, fim, shuffle
        self.offset = offset
        self.num_chunks = max(1, shards.num_tokens // seq_len)
        self._perm_epoch, self._perm = -1, np.arange(0)

    def _chunk(self, k: int) -> int:
        epoch, i = divmod(k, self.num_chunks)
        if not self.shuffle:
            return i
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_chunks)
            self._perm_epoch = epoch
        return int(self._perm[i])

    def __getitem__(self, k: int) -> np.ndarray:
        k += self.offset
        start = self._chunk(k) * self.seq_len
        if self.fim is None:
            return self.shards.read(start, self.seq_len)
        rng = np.random.default_rng([self.seed, 1_000_003, k])
        # FIM examples are fitted to the window (their middles kept whole); the one made from the
        # document the window cuts off ends early, and re-tokenising the parts changes lengths a
        # little, so top up with the stream that follows the window (mid-document text after an
        # end-of-text, like any window that starts mid-document) and cut.
        out = self.fim(self.shards.read(start, self.seq_len), rng, self.seq_len)
        pos = start + self.seq_len
        while len(out) < self.seq_len:
            out = np.concatenate([out, self.shards.read(pos, self.seq_len)])
            pos += self.seq_len
        return out[: self.seq_len]

    def batch(self, indices: range | list[int]) -> np.ndarray:
        return np.stack([self[k] for k in indices])  # (B, T)


def step_indices(step: int, micro: int, rank: int, world: int, micro_batch: int, accum: int) -> range:
    """The sample indices of one micro batch: optimizer step `step`, micro step `micro` in [0, accum),
    on `rank` of `world`. Together the micro batches of a step cover [step x B, (step + 1) x B)."""
    global_batch = micro_batch * accum * world
    base = step * global_batch + (micro * world + rank) * micro_batch
    return range(base, base + micro_batch)

"""Token datasets for the tests, written directly with numpy per the token shard contract (HELPERS.md).

The data part's shard writer produces the same layout; these tests only need a few hundred KB.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def write_token_dataset(
    out: Path, tokenizer_dir: Path, splits: dict[str, list[str]], shard_tokens: int = 50_000
) -> Path:
    """Tokenise `splits` ({"train": [texts], "valid": [texts]}) into `out` as codecomplete-tokens-v1."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    eos_id = tok.token_to_id("<|endoftext|>")
    vocab = tok.get_vocab_size()
    dtype = np.uint16 if vocab < 2**16 else np.uint32
    meta_splits = {}
    for split, texts in splits.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        docs = [
            np.asarray(e.ids + [eos_id], dtype=np.int64)
            for e in tok.encode_batch(texts, add_special_tokens=False)
        ]
        groups, current, size = [], [], 0  # documents per shard, a new shard after shard_tokens
        for doc in docs:
            current.append(doc)
            size += len(doc)
            if size >= shard_tokens:
                groups.append(current)
                current, size = [], 0
        if current:
            groups.append(current)
        names = []
        for i, group in enumerate(groups):
            name = f"shard-{i:05d}.bin"
            np.concatenate(group).astype(dtype).tofile(out / split / name)
            offsets = np.concatenate([[0], np.cumsum([len(d) for d in group])]).astype(np.int64)
            np.save(out / split / name.replace(".bin", ".idx.npy"), offsets)
            names.append(name)
        meta_splits[split] = {
            "num_tokens": int(sum(len(d) for d in docs)),
            "num_documents": len(docs),
            "shards": names,
        }
    meta = {
        "format": "codecomplete-tokens-v1",
        "dtype": np.dtype(dtype).name,
        "eos_id": eos_id,
        "vocab_size": vocab,
        "tokenizer": str(tokenizer_dir),
        "splits": meta_splits,
    }
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, out / "meta.json")
    return out

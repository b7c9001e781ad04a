"""Token shards (the `codecomplete-tokens-v1` contract in HELPERS.md) from curated documents.

`<dir>/<split>/shard-<rank>.bin` holds each document's ids followed by eos; `.idx.npy` the int64 start
offsets (D+1 entries). Each task writes its shards through temporary names; `meta.json` is written
last, by the finalize stage, atomically: a folder without it is incomplete.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline

from codecomplete.data.document import read_jsonl_gz, write_json_atomic
from codecomplete.data.steps import CurateStep

FORMAT = "codecomplete-tokens-v1"
EOS_TOKEN = "<|endoftext|>"


def load_tokenizer(folder: str | Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


class TokenizeStep(CurateStep):
    name = "tokenize"
    stage = "tokens"

    def __init__(
        self, documents_dir: str, out_dir: str, tokenizer: str, splits: list[str], batch: int = 256, **kw
    ):
        super().__init__(**kw)
        self.documents_dir, self.out_dir, self.tokenizer = documents_dir, out_dir, tokenizer
        self.splits, self.batch = splits, batch

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        tok = load_tokenizer(self.tokenizer)
        eos = tok.token_to_id(EOS_TOKEN)
        dtype = token_dtype(tok.get_vocab_size())
        shards = {}
        for split in self.splits:
            src = Path(self.documents_dir) / split / f"{rank:05d}.jsonl.gz"
            texts = [r["code"] for r in read_jsonl_gz(src)] if src.exists() else []
            ids: list[np.ndarray] = []
            for i in range(0, len(texts), self.batch):
                for enc in tok.encode_batch(texts[i : i + self.batch], add_special_tokens=False):
                    ids.append(np.asarray(enc.ids + [eos], dtype=dtype))
            offsets = np.zeros(len(ids) + 1, dtype=np.int64)
            if ids:
                offsets[1:] = np.cumsum([len(a) for a in ids])
            flat = np.concatenate(ids) if ids else np.zeros(0, dtype=dtype)
            folder = Path(self.out_dir) / split
            folder.mkdir(parents=True, exist_ok=True)
            name = f"shard-{rank:05d}"
            _write_atomic(folder / f"{name}.bin", flat.tobytes())
            buf = io.BytesIO()
            np.save(buf, offsets)
            _write_atomic(folder / f"{name}.idx.npy", buf.getvalue())
            shards[split] = {
                "num_tokens": int(offsets[-1]),
                "num_documents": len(ids),
                "shard": f"{name}.bin",
            }
            self.tally.count(f"{split}_tokens", int(offsets[-1]))
        write_json_atomic(Path(self.out_dir) / "_tasks" / f"{rank:05d}.json", shards)
        self.save_tally(rank)
        yield from ()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_meta(out_dir: str | Path, tokenizer: str, tasks: int, splits: list[str]) -> dict:
    """meta.json from the tasks' shard records; the very last file written."""
    out = Path(out_dir)
    tok = load_tokenizer(tokenizer)
    vocab = tok.get_vocab_size()
    meta = {
        "format": FORMAT,
        "dtype": token_dtype(vocab).name,
        "eos_id": tok.token_to_id(EOS_TOKEN),
        "vocab_size": vocab,
        "tokenizer": str(Path(tokenizer).resolve()),
        "splits": {s: {"num_tokens": 0, "num_documents": 0, "shards": []} for s in splits},
    }
    for r in range(tasks):
        rec = json.loads((out / "_tasks" / f"{r:05d}.json").read_text())
        for split, info in rec.items():
            if info["num_documents"] == 0:
                continue
            s = meta["splits"][split]
            s["num_tokens"] += info["num_tokens"]
            s["num_documents"] += info["num_documents"]
            s["shards"].append(info["shard"])
    write_json_atomic(out / "meta.json", meta)
    return meta


def read_tokens(folder: str | Path, split: str) -> list[np.ndarray]:
    """Every document of a split as an id array (eos included); for tests and small tools."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    docs = []
    for shard in meta["splits"][split]["shards"]:
        data = np.fromfile(folder / split / shard, dtype=meta["dtype"])
        idx = np.load(folder / split / shard.replace(".bin", ".idx.npy"))
        docs += [data[idx[i] : idx[i + 1]] for i in range(len(idx) - 1)]
    return docs

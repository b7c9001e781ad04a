"""`codecomplete tokenizer train` on a curated folder, then token shards per the contract."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from corpus import HUMANEVAL_0, recipe

from codecomplete.cli import main
from codecomplete.data.config import CurateConfig
from codecomplete.data.document import iter_records
from codecomplete.data.pipeline import run_curate
from codecomplete.data.tokens import read_tokens


@pytest.fixture(scope="module")
def tokenized(curated, tmp_path_factory):
    corpus, out, _ = curated
    tmp = tmp_path_factory.mktemp("tok")
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--input",
                str(out),
                "--out",
                str(tmp / "tokenizer"),
                "--vocab-size",
                "1200",
            ]
        )
        == 0
    )
    copy = tmp / "curated"
    shutil.copytree(out, copy)  # resume the finished run: only the token stage runs
    stats = run_curate(
        CurateConfig.from_dict(recipe(corpus, copy, tokens={"tokenizer": str(tmp / "tokenizer")}))
    )
    return corpus, copy, tmp / "tokenizer", stats


def test_tokenizer_round_trips_every_file_and_fim_tokens_are_single(tokenized):
    from tokenizers import Tokenizer

    from codecomplete.models.tokenizer import special_tokens

    corpus, out, tok_dir, _ = tokenized
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    texts = (
        list(corpus.clean.values())
        + [r["code"] for r in iter_records(out, None)]
        + [HUMANEVAL_0, "x\t\r\n  é 😀"]
    )
    bad = [t[:60] for t in texts if tok.decode(tok.encode(t).ids, skip_special_tokens=False) != t]
    assert not bad
    for special in special_tokens():
        assert len(tok.encode(special).ids) == 1, special


def test_tokenizer_loads_with_autotokenizer(tokenized):
    from transformers import AutoTokenizer

    _, _, tok_dir, _ = tokenized
    hf = AutoTokenizer.from_pretrained(str(tok_dir))
    code = "def f(x):\n    return x  # done\n"
    assert hf.decode(hf(code)["input_ids"]) == code and hf.eos_token == "<|endoftext|>"


def test_token_shards_follow_the_contract(tokenized):
    from tokenizers import Tokenizer

    _, out, tok_dir, stats = tokenized
    meta = json.loads((out / "tokens" / "meta.json").read_text())
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    assert meta["format"] == "codecomplete-tokens-v1" and meta["dtype"] == "uint16"
    assert (
        meta["eos_id"] == tok.token_to_id("<|endoftext|>") == 0 and meta["vocab_size"] == tok.get_vocab_size()
    )
    for split in ("train", "test"):
        docs = read_tokens(out / "tokens", split)
        codes = [r["code"] for r in iter_records(out, split)]
        assert len(docs) == len(codes) == meta["splits"][split]["num_documents"] > 0
        assert sum(len(d) for d in docs) == meta["splits"][split]["num_tokens"]
        for ids, code in zip(docs, codes, strict=True):
            assert ids[-1] == meta["eos_id"] and tok.decode(ids[:-1].tolist()) == code
        for shard in meta["splits"][split]["shards"]:
            idx = np.load(out / "tokens" / split / shard.replace(".bin", ".idx.npy"))
            assert idx.dtype == np.int64 and idx[0] == 0
            assert idx[-1] * 2 == (out / "tokens" / split / shard).stat().st_size
    # split by repository: the held-out repo's tokens are only in `test`
    assert stats["tokens"]["test"] == meta["splits"]["test"]["num_tokens"]

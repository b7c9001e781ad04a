"""Token shards -> packed sequences with FIM: contents, determinism, and the step -> samples map."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from codecomplete.models.fim import from_name
from codecomplete.training.data import PackedSequences, TokenShards, fim_from_tokenizer, step_indices


def _stream(root, split):
    meta = json.loads((root / "meta.json").read_text())
    return np.concatenate(
        [np.fromfile(root / split / name, dtype=meta["dtype"]) for name in meta["splits"][split]["shards"]]
    ).astype(np.int64)


def test_reads_the_split_as_one_stream_across_shards(token_dataset):
    shards = TokenShards(token_dataset, "train")
    stream = _stream(token_dataset, "train")
    assert len(shards._shards) > 3 and shards.num_tokens == len(stream)
    boundary = len(shards._shards[0])
    assert np.array_equal(shards.read(boundary - 50, 100), stream[boundary - 50 : boundary + 50])
    wrapped = shards.read(len(stream) - 10, 20)  # wraps around at the end
    assert np.array_equal(wrapped, np.concatenate([stream[-10:], stream[:10]]))
    assert (stream == shards.eos_id).sum() == shards.info["num_documents"]


def test_a_directory_without_meta_json_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta.json"):
        TokenShards(tmp_path, "train")


def test_without_fim_samples_are_chunks_and_each_epoch_visits_each_once(token_dataset):
    shards = TokenShards(token_dataset, "train")
    data = PackedSequences(shards, seq_len=256, seed=3)
    stream = _stream(token_dataset, "train")
    starts = set()
    for k in range(data.num_chunks):
        s = data[k]
        start = data._chunk(k) * 256
        assert np.array_equal(s, stream[start : start + 256])
        starts.add(start)
    assert len(starts) == data.num_chunks  # a permutation: nothing repeated, nothing skipped
    assert any((data[k] == shards.eos_id).any() for k in range(data.num_chunks))  # packed with separators


def test_order_depends_only_on_seed_and_index(token_dataset, tiny_model_dir):
    shards = TokenShards(token_dataset, "train")
    fim = fim_from_tokenizer(
        tiny_model_dir / "tokenizer.json", from_name("codecomplete"), shards.eos_id, 0.5, 0.5
    )
    a = PackedSequences(shards, 128, seed=1, fim=fim)
    b = PackedSequences(shards, 128, seed=1, fim=fim)
    ks = [5, 900, 3, 5]
    assert all(np.array_equal(a[k], b[k]) for k in reversed(ks))  # any access order, same samples
    c = PackedSequences(shards, 128, seed=2, fim=fim)
    assert not all(np.array_equal(a[k], c[k]) for k in ks)
    assert a.batch(range(4)).shape == (4, 128)


def test_start_sample_continues_the_same_data_order(token_dataset, tiny_model_dir):
    # A run continued with data.start_sample=N sees what an uninterrupted run would have seen from
    # sample N on, FIM cuts included (they are drawn from (seed, sample index)).
    shards = TokenShards(token_dataset, "train")
    fim = fim_from_tokenizer(
        tiny_model_dir / "tokenizer.json", from_name("codecomplete"), shards.eos_id, 0.5, 0.5
    )
    whole = PackedSequences(shards, 128, seed=7, fim=fim)
    rest = PackedSequences(shards, 128, seed=7, fim=fim, offset=37)
    assert all(np.array_equal(rest[k], whole[k + 37]) for k in (0, 1, 5, whole.num_chunks))
    assert not np.array_equal(rest[0], whole[0])


def _fim_doc(tiny_model_dir, text, spm_rate, seed=0):
    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    fim = fim_from_tokenizer(tok, from_name("codecomplete"), eos, rate=1.0, spm_rate=spm_rate)
    ids = np.asarray(tok.encode(text).ids + [eos], dtype=np.int64)
    out = fim(ids, np.random.default_rng(seed))
    return tok, [tok.id_to_token(i) for i in out.tolist()], out


TEXT = "def add(a, b):\n    total = a + b\n    return total\n\nprint(add(1, 2))\n"


@pytest.mark.parametrize("seed", range(5))
def test_psm_examples_reassemble_the_document(tiny_model_dir, seed):
    tok, pieces, out = _fim_doc(tiny_model_dir, TEXT, spm_rate=0.0, seed=seed)
    ids = out.tolist()
    p, s, m = (tok.token_to_id(t) for t in ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"))
    assert ids[0] == p and ids.count(s) == 1 and ids.count(m) == 1
    assert ids[-1] == tok.token_to_id("<|endoftext|>")  # the middle ends at end-of-text
    pre, suf, mid = ids[1 : ids.index(s)], ids[ids.index(s) + 1 : ids.index(m)], ids[ids.index(m) + 1 : -1]
    assert tok.decode(pre) + tok.decode(mid) + tok.decode(suf) == TEXT


@pytest.mark.parametrize("seed", range(5))
def test_spm_examples_put_the_suffix_first(tiny_model_dir, seed):
    tok, pieces, out = _fim_doc(tiny_model_dir, TEXT, spm_rate=1.0, seed=seed)
    ids = out.tolist()
    p, s, m = (tok.token_to_id(t) for t in ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"))
    assert ids[:2] == [p, s] and ids.count(m) == 1
    suf, rest = ids[2 : ids.index(m)], ids[ids.index(m) + 1 : -1]
    assert tok.decode(rest) + tok.decode(suf) == TEXT  # prefix + middle, then the suffix


def test_fim_rate_is_respected_and_template_matches_serving(tiny_model_dir):
    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    template = from_name("codecomplete")
    fim = fim_from_tokenizer(tok, template, eos, rate=0.3, spm_rate=0.5)
    doc = tok.encode(TEXT).ids + [eos]
    out = fim(np.asarray(doc * 400, dtype=np.int64), np.random.default_rng(0)).tolist()
    share = out.count(tok.token_to_id("<fim_middle>")) / 400
    assert 0.22 < share < 0.38
    # The PSM prompt training builds is the prompt the server builds from the same prefix and suffix.
    pre, suf = tok.encode("def f(x):\n    ").ids, tok.encode("\n    return y\n").ids
    served = template.encode(pre, suf, tok.token_to_id, "psm")
    assert tok.decode(served, skip_special_tokens=False) == template.render(
        "def f(x):\n    ", "\n    return y\n"
    )


@pytest.mark.parametrize("seed", range(6))
def test_a_document_the_window_cuts_off_still_ends_its_middle(tiny_model_dir, seed):
    # A served model knows its middle is done only if training showed it the end-of-text after
    # every middle, including that of the (usual) document longer than the training window.
    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    fim = fim_from_tokenizer(tok, from_name("codecomplete"), eos, rate=1.0, spm_rate=0.0)
    window = np.asarray(tok.encode(TEXT * 40).ids[:200], dtype=np.int64)  # no end-of-text in it
    ids = fim(window, np.random.default_rng(seed), length=200).tolist()
    p, s, m = (tok.token_to_id(t) for t in ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"))
    assert len(ids) <= 200 and ids[0] == p and ids[-1] == eos
    pre, suf, mid = ids[1 : ids.index(s)], ids[ids.index(s) + 1 : ids.index(m)], ids[ids.index(m) + 1 : -1]
    # fitting the window trimmed the suffix's tail / the prefix's head, never the middle
    assert tok.decode(pre) + tok.decode(mid) + tok.decode(suf) in tok.decode(window.tolist())


def test_every_middle_in_packed_samples_is_followed_by_end_of_text(token_dataset, tiny_model_dir):
    shards = TokenShards(token_dataset, "train")
    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    fim = fim_from_tokenizer(tok, from_name("codecomplete"), shards.eos_id, 1.0, 0.5)
    data = PackedSequences(shards, 128, seed=4, fim=fim)
    middle, prefix = tok.token_to_id("<fim_middle>"), tok.token_to_id("<fim_prefix>")
    examples = 0
    for k in range(40):
        ids = data[k].tolist()
        assert len(ids) == 128
        for i, t in enumerate(ids):
            if t == middle:
                examples += 1
                rest = ids[i + 1 :]
                # the end-of-text comes before any next example starts
                nxt = rest.index(prefix) if prefix in rest else len(rest)
                assert shards.eos_id in rest[:nxt], f"sample {k}: a middle runs off the window"
    assert examples >= 40


def test_middles_do_not_all_end_on_the_window_s_last_position(token_dataset, tiny_model_dir):
    # If the example made from the cut-off document always filled the window, its end-of-text would
    # always be the window's last token, and the model learns to end a middle only there (it did:
    # run 4 of the shipped model). Where middles end must not give that away.
    shards = TokenShards(token_dataset, "train")
    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    fim = fim_from_tokenizer(tok, from_name("codecomplete"), shards.eos_id, 1.0, 0.5)
    data = PackedSequences(shards, 128, seed=5, fim=fim)
    middle = tok.token_to_id("<fim_middle>")
    ends = []
    for k in range(60):
        ids = data[k].tolist()
        for i, t in enumerate(ids):
            if t == middle and shards.eos_id in ids[i + 1 :]:
                ends.append(ids.index(shards.eos_id, i + 1))
    assert len(ends) >= 40
    assert sum(e == 127 for e in ends) < len(ends) / 4
    assert len(set(ends)) > len(ends) / 3


@pytest.mark.parametrize("world, micro, accum", [(1, 4, 1), (2, 3, 2), (4, 2, 3)])
def test_each_step_covers_its_own_slice_of_sample_indices(world, micro, accum):
    batch = world * micro * accum
    for step in (0, 1, 7):
        seen = [
            k
            for m in range(accum)
            for r in range(world)
            for k in step_indices(step, m, r, world, micro, accum)
        ]
        assert sorted(seen) == list(range(step * batch, (step + 1) * batch))


def _small_dataset(root, splits: dict[str, list[int]], eos_id=0, vocab_size=512):
    meta = {"format": "codecomplete-tokens-v1", "dtype": "uint16", "eos_id": eos_id, "vocab_size": vocab_size,
            "splits": {}}  # fmt: skip
    for split, ids in splits.items():
        (root / split).mkdir(parents=True)
        np.asarray(ids, dtype=np.uint16).tofile(root / split / "shard-00000.bin")
        meta["splits"][split] = {"num_documents": ids.count(eos_id), "num_tokens": len(ids),
                                 "shards": ["shard-00000.bin"]}  # fmt: skip
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def test_several_datasets_read_as_one_stream_in_the_order_given(token_dataset, tmp_path):
    # data.path=a,b trains on both corpora: b's tokens follow a's, and a split only one has counts once.
    vocab = json.loads((token_dataset / "meta.json").read_text())["vocab_size"]
    extra = _small_dataset(tmp_path / "extra", {"train": [5, 6, 0, 7, 8, 9, 0]}, vocab_size=vocab)
    both = TokenShards(f"{token_dataset},{extra}", "train")
    a = _stream(token_dataset, "train")
    assert both.num_tokens == len(a) + 7 == both.info["num_tokens"]
    assert np.array_equal(both.read(len(a) - 3, 10), np.concatenate([a[-3:], [5, 6, 0, 7, 8, 9, 0]]))
    assert both.info["num_documents"] == TokenShards(token_dataset, "train").info["num_documents"] + 2
    assert set(both.meta["splits"]) == {"train", "valid"} and both.meta["sources"] == [
        str(token_dataset),
        str(extra),
    ]
    valid = TokenShards([token_dataset, extra], "valid")  # extra has no valid split: a's alone
    assert np.array_equal(valid.read(0, valid.num_tokens), _stream(token_dataset, "valid"))


def test_datasets_of_different_tokenizers_are_not_mixed(token_dataset, tmp_path):
    other = _small_dataset(tmp_path / "other", {"train": [5, 6, 2]}, eos_id=2)
    with pytest.raises(ValueError, match="eos_id .* same tokenizer"):
        TokenShards(f"{token_dataset},{other}", "train")

"""`codecomplete export --average-with`: the mean of a checkpoint's weights and earlier exports'
(no DeepSpeed here: `average_weights` works on a loaded model; test_deepspeed.py runs the command)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from codecomplete.training import history
from codecomplete.training.export import average_weights


def _model(seed: int, **arch) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = dict(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=97, tie_word_embeddings=True)
    return GPT2LMHeadModel(GPT2Config(**{**cfg, **arch})).eval()


def _save(model, folder, tokens: int | None = None):
    model.save_pretrained(folder)
    if tokens is not None:  # an export of ours carries its history
        run = {"steps": tokens // 100, "tokens": tokens}
        (folder / history.STATE_FILE).write_text(json.dumps({"history": [run]}))
    return folder


def test_weights_become_the_mean_and_tied_embeddings_stay_tied(tmp_path):
    a, b, c = _model(1), _model(2), _model(3)
    want = {
        n: (p + dict(b.named_parameters())[n] + dict(c.named_parameters())[n]) / 3
        for n, p in a.named_parameters()
    }
    folders = [_save(b, tmp_path / "b", tokens=12_300), _save(c, tmp_path / "c")]
    sources = average_weights(a, folders)

    for name, p in a.named_parameters():
        torch.testing.assert_close(p, want[name], rtol=0, atol=1e-6)
    assert a.lm_head.weight is a.transformer.wte.weight
    # The averaged model is a working model whose outputs differ from each of its parts.
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        out = a(ids).logits
        assert torch.isfinite(out).all()
        assert not torch.allclose(out, b(ids).logits)
    # What was averaged in, for the state and the card: a hub-style folder has no history.
    assert sources == [
        {"path": str(tmp_path / "b"), "steps": 123, "tokens": 12_300},
        {"path": str(tmp_path / "c"), "steps": 0, "tokens": 0},
    ]


@pytest.mark.parametrize("arch", [{"n_layer": 3}, {"n_embd": 48}])
def test_another_architecture_is_refused_and_the_model_left_alone(tmp_path, arch):
    a = _model(1)
    before = {n: p.clone() for n, p in a.named_parameters()}
    other = _save(_model(2, **arch), tmp_path / "other")
    with pytest.raises(ValueError, match="--average-with .*other"):
        average_weights(a, [other])
    for name, p in a.named_parameters():
        assert torch.equal(p, before[name])


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        average_weights(_model(1), [tmp_path / "nowhere"])


def test_the_card_history_says_which_run_was_averaged():
    runs = [
        {"start": "scratch", "steps": 10, "tokens": 100},
        {"start": "exp1", "steps": 10, "tokens": 100, "averaged_with": [{"path": "exp1", "tokens": 100}]},
    ]
    text = "\n".join(history.markdown(runs))
    assert "Run 2 was exported as the mean of its final weights and those of `exp1`" in text
    assert "Run 1 was" not in text

"""Model and tokenizer construction: fine-tune from a folder, fresh from a config, new FIM tokens."""

from __future__ import annotations

from codecomplete.training.config import ModelConfig
from codecomplete.training.model import build_model, load_tokenizer, param_groups


def test_fine_tune_source_gains_rows_for_added_fim_tokens(tiny_model_dir):
    cfg = ModelConfig(name_or_path=str(tiny_model_dir), add_fim_tokens="santacoder")
    tok = load_tokenizer(cfg)
    before = ModelConfig(name_or_path=str(tiny_model_dir))
    base = build_model(before, load_tokenizer(before))
    model = build_model(cfg, tok)
    vocab = tok.get_vocab()
    assert all(t in vocab for t in ("<fim-prefix>", "<fim-suffix>", "<fim-middle>"))
    rows = model.get_input_embeddings().weight.shape[0]
    assert rows == len(tok) == base.get_input_embeddings().weight.shape[0] + 3
    assert model.config.fim_template == "santacoder"
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # still tied
    assert tok("x<fim-middle>y").input_ids[1] == vocab["<fim-middle>"]  # one token, not split


def test_from_scratch_takes_vocab_and_eos_from_the_tokenizer(tiny_model_dir):
    cfg = ModelConfig(
        arch={"model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2}, tokenizer=str(tiny_model_dir)
    )
    tok = load_tokenizer(cfg)
    model = build_model(cfg, tok, seed=0)
    assert model.config.vocab_size == len(tok) and model.config.eos_token_id == tok.eos_token_id
    assert model.config.fim_template == "codecomplete"
    again = build_model(cfg, tok, seed=0)
    assert all((a == b).all() for a, b in zip(model.parameters(), again.parameters(), strict=True))


def test_weight_decay_only_on_matrices_and_tied_weights_once(tiny_model_dir):
    model = build_model(
        ModelConfig(name_or_path=str(tiny_model_dir)),
        load_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir))),
    )
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(ids) == len(set(ids)) == len({id(p) for p in model.parameters()})

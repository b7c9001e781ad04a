"""Batch invariance past a few hundred tokens: a known gap, pinned down here.

The invariance tests elsewhere use short prompts. With a 420-token prompt prefilled alone or
together with a 900-token one, a Llama's cached keys/values of the short prompt differ in their last
bits from the second layer on: the multi-token attention (fast_decode._attend_many) runs one GEMM
over the batch's padded rows and width, and the CPU kernels round differently with those sizes
(the attention output of layer 0 differs while its inputs do not; on random tensors of these shapes
too, so the cause is not the family's). A seeded request with a long prompt may then draw another
token now and then when a longer prompt shares its prefill. The one-token step has a sibling gap for
grouped KV heads (G query heads per KV head make p @ V a G-row GEMM, whose last bits change when
zero columns are appended past ~400). GPT-2's random weights happen to hold in this test. Marked
xfail(strict): it fails as soon as the gap is closed (each row's attention on its own rows and
width, as attention.py's rowwise_attention does for the model's forward), and the marker then goes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import make_core, submit

from codecomplete.engine.types import SamplingParams

SHIPPED = Path(__file__).parents[2] / "models" / "codecomplete-tiny-py"


def _model(kind: str, out: Path) -> Path:
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "llama":
        cfg = LlamaConfig(
            vocab_size=8192,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
        )
        LlamaForCausalLM(cfg).save_pretrained(out)
    else:
        GPT2LMHeadModel(
            GPT2Config(vocab_size=8192, n_embd=128, n_layer=2, n_head=4, n_positions=1024)
        ).save_pretrained(out)
    AutoTokenizer.from_pretrained(SHIPPED).save_pretrained(out)
    return out


def _kv_of_the_short_prompt(model_dir: Path, with_long: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    core = make_core(model_dir, prefix_cache_mb=0, speculative_tokens=0)
    submit(
        core,
        "short",
        SamplingParams(max_tokens=4, temperature=1.0, seed=1),
        prompt_token_ids=list(range(100, 520)),
    )
    if with_long:
        submit(
            core,
            "long",
            SamplingParams(max_tokens=4, temperature=1.0, seed=2),
            prompt_token_ids=list(range(200, 1100)),
        )
    core.step()  # both prompts fit one step's budget: one prefill
    batch = core.batch
    row = next(i for i, s in enumerate(batch.seqs) if s.request.request_id == "short")
    slot = batch.first + row
    return [
        (layer.k[slot, :, :420].clone(), layer.v[slot, :, :420].clone()) for layer in core.runner.cache.layers
    ]


@pytest.mark.parametrize(
    "kind",
    [
        "gpt2",
        pytest.param("llama", marks=pytest.mark.xfail(strict=True, reason="known: see the module docstring")),
    ],
)
def test_a_long_prompt_gets_the_same_cache_alone_or_beside_a_longer_one(kind, tmp_path):
    model_dir = _model(kind, tmp_path / kind)
    alone = _kv_of_the_short_prompt(model_dir, with_long=False)
    beside = _kv_of_the_short_prompt(model_dir, with_long=True)
    for (k1, v1), (k2, v2) in zip(alone, beside, strict=True):
        assert torch.equal(k1, k2) and torch.equal(v1, v2)

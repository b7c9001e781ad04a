"""Batch invariance past a few hundred tokens.

The other invariance tests use short prompts. Past a few hundred tokens the CPU's GEMMs round
differently with the sizes a batch gives a shorter row: a 420-token prompt prefilled beside a
900-token one got other last bits in its cached keys/values than prefilled alone (the multi-token
attention ran one GEMM over the batch's padded rows and width), and with grouped KV heads the
one-token step's p @ V (a G-row GEMM) changed its bits when the batch's width appended zero
columns past ~400. Found in session 8 with a Llama; fixed by attending per prompt on its own shapes
(fast_decode._attend_many with the rows' shapes) and by summing grouped-head p @ V in blocks of
PV_BLOCK columns (fast_decode._attend). Checked here on the logits a seeded request samples from.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import make_core, submit

from codecomplete.engine.types import SamplingParams

SHIPPED = Path(__file__).parents[2] / "models" / "codecomplete-tiny-py"
SHORT, LONG = list(range(100, 520)), list(range(200, 1100))  # 420 and 900 prompt tokens


def _model(kind: str, out: Path) -> Path:
    """A random 2-layer model of the family (models/tiny.py's config: Llama with grouped KV heads,
    GPTBigCode multi-query) with a 1024-token context and the shipped tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codecomplete.models.tiny import tiny_config

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_config(kind, 8192, n_ctx=1024, width=128)).save_pretrained(out)
    AutoTokenizer.from_pretrained(SHIPPED).save_pretrained(out)
    return out


def _short_row(model_dir: Path, with_long: bool):
    """The short prompt's cached keys/values after its prefill, and the logits of its decode steps."""
    core = make_core(model_dir, prefix_cache_mb=0, speculative_tokens=0)
    logits: list[torch.Tensor] = []
    decode = core.runner.decode

    def recording(batch):
        out = decode(batch)
        row = next(i for i, s in enumerate(batch.seqs) if s.request.request_id == "short")
        logits.append(out[row].clone())
        return out

    core.runner.decode = recording
    submit(core, "short", SamplingParams(max_tokens=6, temperature=1.0, seed=1), prompt_token_ids=SHORT)
    if with_long:
        submit(core, "long", SamplingParams(max_tokens=6, temperature=1.0, seed=2), prompt_token_ids=LONG)
    core.step()  # both prompts fit one step's budget: one prefill
    slot = core.batch.first + next(
        i for i, s in enumerate(core.batch.seqs) if s.request.request_id == "short"
    )
    kv = [
        (layer.k[slot, :, :420].clone(), layer.v[slot, :, :420].clone()) for layer in core.runner.cache.layers
    ]
    while core.step():
        pass
    return kv, logits


@pytest.mark.parametrize("kind", ["gpt2", "gpt_bigcode", "llama", "codegen", "gpt_neo"])
def test_a_long_prompt_has_the_same_bits_alone_or_beside_a_longer_one(kind, tmp_path):
    model_dir = _model(kind, tmp_path / kind)
    kv_alone, logits_alone = _short_row(model_dir, with_long=False)
    kv_beside, logits_beside = _short_row(model_dir, with_long=True)
    for (k1, v1), (k2, v2) in zip(kv_alone, kv_beside, strict=True):
        assert torch.equal(k1, k2) and torch.equal(v1, v2)
    assert len(logits_alone) == len(logits_beside) == 5  # 6 tokens: the prefill's, then 5 steps
    for a, b in zip(logits_alone, logits_beside, strict=True):
        assert torch.equal(a, b)

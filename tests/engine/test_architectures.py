"""The architecture matrix: batched prefill + 20 decode steps equal model.generate's greedy output
for every family, with mixed prompt lengths and requests joining a running batch."""

from __future__ import annotations

import pytest
import torch
from engine_helpers import greedy, ids_of, make_core, run_until_idle, submit

from codecomplete.models.tiny import ARCHITECTURES

PROMPTS = [
    "def add(a, b):\n    return",
    "import os\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n",
    "for i in range(10):",
    "x",
]


def reference(core, prompt: str, n: int = 20) -> list[int]:
    ids = torch.tensor([core.tokenizer(prompt)["input_ids"]])
    out = core.runner.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=n,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )
    return out[0, ids.shape[1] :].tolist()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_batched_decode_equals_generate(arch, tiny_model_factory):
    core = make_core(tiny_model_factory(arch), prefix_cache_mb=0)
    outs = {i: submit(core, f"r{i}", greedy(20), PROMPTS[i]) for i in range(3)}
    for _ in range(5):  # three decode together for a few steps ...
        core.step()
    assert core.metrics()["running"] == 3
    for i in range(3, len(PROMPTS)):  # ... then two more join the running batch
        outs[i] = submit(core, f"r{i}", greedy(20), PROMPTS[i])
    run_until_idle(core)
    for i, prompt in enumerate(PROMPTS):
        assert ids_of(outs[i]) == reference(core, prompt), f"{arch}: prompt {i} differs from generate"
    assert core.metrics()["running"] == 0

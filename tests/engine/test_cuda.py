"""The engine on CUDA: marked `gpu`, skipped without CUDA (tests/conftest.py); run on a lent GPU by
scripts/gpu_engine.sh. No GPU has run them yet.

On the bundled model, which is trained, so its greedy picks are seldom near ties and other kernels
than the CPU's keep its tokens: the slot engine's greedy tokens equal `model.generate`'s on the same
GPU for a lone request and in a batch, and the compiled step (`--compile on`: CUDA graphs, rows
padded to buckets) writes the eager step's tokens without recompiling after its warm-up.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import greedy, ids_of, make_core, run_until_idle, submit
from test_fast_decode import compiled_vs_eager_in_a_fresh_interpreter

pytestmark = pytest.mark.gpu

MODEL = Path(__file__).parents[2] / "models" / "codecomplete-tiny-py"
PROMPTS = [
    "import os\nimport sys\n\n\ndef main(argv):\n    for arg in argv:\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
]


def _generate(core, prompt: str, n: int) -> list[int]:
    ids = torch.tensor([core.tokenizer(prompt)["input_ids"]], device=core.runner.device)
    out = core.runner.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=n,
        do_sample=False,
        eos_token_id=None,  # as the engine's ignore_eos: no stop, nothing masked
        pad_token_id=0,
    )
    return out[0, ids.shape[1] :].tolist()


def test_the_engine_on_cuda_writes_generates_greedy_tokens():
    core = make_core(MODEL, device="cuda", prefix_cache_mb=0, speculative_tokens=0)
    assert core.runner.device.type == "cuda"
    expected = [_generate(core, p, 24) for p in PROMPTS]
    alone = []
    for i, p in enumerate(PROMPTS):
        outs = submit(core, f"a{i}", greedy(24), p)
        run_until_idle(core)
        alone.append(ids_of(outs))
    batched = [submit(core, f"b{i}", greedy(24), p) for i, p in enumerate(PROMPTS)]
    run_until_idle(core)
    assert alone == expected
    assert [ids_of(o) for o in batched] == expected


def test_cuda_graphs_write_the_eager_tokens_without_recompiling():
    """In a fresh interpreter, as a server starts (see test_fast_decode.py's CPU version)."""
    result = compiled_vs_eager_in_a_fresh_interpreter(MODEL, graphs=True, device="cuda")
    assert result["failed"] is None
    assert result["compiled"] == result["eager"]
    assert result["new_graphs"] == 0

"""Helpers for the engine tests: an EngineCore driven step by step in the test's own thread.

Imported as `from engine_helpers import ...` (pytest puts this folder on sys.path).
"""

from __future__ import annotations

from codecomplete.engine.config import EngineConfig
from codecomplete.engine.types import GenerationRequest, RequestOutput, SamplingParams


def make_core(model_dir, **overrides):
    """An engine on the CPU. Token healing is off unless asked for: most tests compare against
    `model.generate` or a forward pass over the prompt as tokenised (test_healing.py turns it on)."""
    from codecomplete.engine.core import EngineCore

    overrides.setdefault("token_healing", False)
    # float32 always: "auto" may pick bf16 on a CPU where it measures faster (models/loading.py).
    overrides.setdefault("dtype", "float32")
    return EngineCore.from_config(EngineConfig(model=str(model_dir), device="cpu", **overrides))


def greedy(max_tokens=20, **kw) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, **kw)


def submit(core, rid: str, params: SamplingParams, prompt=None, **kw) -> list[RequestOutput]:
    outs: list[RequestOutput] = []
    core.submit(GenerationRequest(rid, params, prompt=prompt, **kw), outs.append)
    return outs


def run_until_idle(core, max_steps: int = 10_000) -> int:
    steps = 0
    while core.step():
        steps += 1
        assert steps < max_steps
    return steps


def text_of(outs: list[RequestOutput], index: int = 0) -> str:
    return "".join(c.text for o in outs for c in o.choices if c.index == index)


def ids_of(outs: list[RequestOutput], index: int = 0) -> list[int]:
    return [t for o in outs for c in o.choices if c.index == index for t in c.token_ids]


def finish_of(outs: list[RequestOutput], index: int = 0) -> str | None:
    reasons = [c.finish_reason for o in outs for c in o.choices if c.index == index and c.finish_reason]
    assert len(reasons) <= 1, "a choice finishes once"
    return reasons[0] if reasons else None

"""Helpers for the engine tests: an EngineCore driven step by step in the test's own thread.

Imported as `from engine_helpers import ...` (pytest puts this folder on sys.path).
"""

from __future__ import annotations

from codecomplete.engine.config import EngineConfig
from codecomplete.engine.types import GenerationRequest, RequestOutput, SamplingParams


def make_core(model_dir, **overrides):
    """An engine on the CPU (unless `device` says otherwise). Token healing is off unless asked
    for: most tests compare against `model.generate` or a forward pass over the prompt as
    tokenised (test_healing.py turns it on)."""
    from codecomplete.engine.core import EngineCore

    overrides.setdefault("token_healing", False)
    # float32 always: "auto" may pick bf16 on a CPU where it measures faster (models/loading.py).
    overrides.setdefault("dtype", "float32")
    overrides.setdefault("device", "cpu")
    return EngineCore.from_config(EngineConfig(model=str(model_dir), **overrides))


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


def wrap_forward(core, wrapper):
    """Route every forward pass of `core` through `wrapper(fn, ids, *args, **kw)`, where `ids` is
    the batch's input token ids: the model's own forward (the transformer body) and the slot
    runner's own decode and prompt steps (engine/fast_decode.py), which skip it. Returns a
    function that undoes it. Used to make the model fail on some inputs or on all of them."""
    runner = core.runner
    body = runner.model.base_model
    saved = [(body, "forward", body.forward)]

    def model_forward(*args, real=body.forward, **kw):
        ids = kw.get("input_ids", args[0] if args else None)
        return wrapper(real, ids, *args, **kw)

    body.forward = model_forward
    for name in ("fast", "_fast_prefill"):
        fn = getattr(runner, name, None)
        if fn is not None:
            saved.append((runner, name, fn))
            setattr(runner, name, lambda ids, *a, real=fn, **kw: wrapper(real, ids, ids, *a, **kw))

    def undo():
        for obj, name, fn in saved:
            setattr(obj, name, fn)

    return undo

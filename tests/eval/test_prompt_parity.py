"""eval builds its prompts through the server's own code path (engine/inputs.py `prepare_prompt`, the
model registry, the loader): for the same request, the token ids LocalBackend feeds `generate` are
exactly those the serving engine feeds the model (as the engine reports them on its first output)."""

from __future__ import annotations

import asyncio

import pytest

from codecomplete.eval.backends import CompletionRequest, LocalBackend, generation_request

LONG = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(200))

REQUESTS = [
    CompletionRequest(prompt="def add(a, b):\n", max_tokens=8),  # line completion: ends at a line
    CompletionRequest(prompt=LONG, max_tokens=16),  # longer than the context: its end is kept
    CompletionRequest(prompt=LONG, max_tokens=1000),  # a reserve capped at a quarter of the context
    CompletionRequest(prompt="def f(x):\n", suffix="    return y\n", max_tokens=8),  # FIM
    CompletionRequest(prompt=LONG, suffix=LONG, max_tokens=24),  # FIM, both sides truncated
    CompletionRequest(prompt=LONG, suffix="", max_tokens=8),  # FIM with an empty suffix, as served
    CompletionRequest(prompt="", max_tokens=4),  # empty: the model's BOS
]


@pytest.fixture(scope="module")
def served_prompts(tiny_model_dir):
    """The ids the serving engine (default settings, token healing on) feeds for each request."""
    from codecomplete.engine import EngineConfig, build_engine

    async def run():
        engine = build_engine(EngineConfig(model=str(tiny_model_dir), device="cpu"))
        await engine.start()
        try:
            out = []
            for i, req in enumerate(REQUESTS):
                stream = engine.generate(generation_request(req, f"parity-{i}"))
                first = await stream.__anext__()
                await stream.aclose()
                assert first.error is None, first.error
                out.append(first.prompt_token_ids)
            return out, engine.model_info.context_length
        finally:
            await engine.stop()

    return asyncio.run(run())


def test_eval_prompts_are_the_servers(tiny_model_dir, served_prompts):
    served, ctx = served_prompts
    local = LocalBackend(str(tiny_model_dir), device="cpu")
    assert local.context_length() == ctx
    for req, want in zip(REQUESTS, served, strict=True):
        got = local.prepare(req).token_ids
        assert got == want, (req.prompt[:40], req.suffix and req.suffix[:40], len(got), len(want))
    assert any(len(ids) > ctx // 2 for ids in served)  # the truncating cases were exercised

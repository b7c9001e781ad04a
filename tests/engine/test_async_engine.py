"""The EngineClient front end: build_engine, start, streaming from the engine thread, aborts by
closing the stream, health and metrics."""

from __future__ import annotations

import asyncio

import pytest

from codecomplete.engine import EngineConfig, QueueFullError, build_engine
from codecomplete.engine.types import GenerationRequest, SamplingParams


def run(coro):
    return asyncio.run(coro)


async def _started(model_dir, **kw):
    engine = build_engine(EngineConfig(model=str(model_dir), served_names=["tiny", "codegen"], **kw))
    assert not engine.health().ok  # not loaded yet
    await engine.start()
    return engine


def test_streams_deltas_and_reports_model_info(tiny_model_dir):
    async def main():
        engine = await _started(tiny_model_dir)
        try:
            info = engine.model_info
            assert info.name == "tiny" and info.served_names == ["tiny", "codegen"]
            assert info.context_length == 256 and info.fim_template == "codecomplete"
            req = GenerationRequest(
                "s", SamplingParams(max_tokens=12, temperature=0, ignore_eos=True), prompt="def f("
            )
            events = [out async for out in engine.generate(req)]
            assert events[0].prompt_token_ids and events[0].num_prompt_tokens == len(
                events[0].prompt_token_ids
            )
            assert len(events) > 1 and events[-1].finished and not any(e.finished for e in events[:-1])
            assert sum(len(c.token_ids) for e in events for c in e.choices) == 12
            assert engine.health().ok
        finally:
            await engine.stop()
        assert not engine.health().ok  # the loop is gone and health says so

    run(main())


def test_closing_streams_after_first_token_cancels_them(tiny_model_dir):
    async def main():
        engine = await _started(tiny_model_dir)
        try:
            params = SamplingParams(max_tokens=200, temperature=0, ignore_eos=True)
            streams = [
                engine.generate(GenerationRequest(f"c{i}", params, prompt=f"x = {i}")) for i in range(16)
            ]
            for s in streams:
                first = await s.__anext__()
                assert first.choices
            for s in streams:
                await s.aclose()  # what the API does when a client disconnects
            for _ in range(100):
                m = engine.metrics()
                if m["running"] == 0:
                    break
                await asyncio.sleep(0.01)
            m = engine.metrics()
            assert m["running"] == 0 and m["requests_cancelled_total"] == 16
            assert m["tokens_generated_after_cancel_total"] <= 16  # at most the step in flight
        finally:
            await engine.stop()

    run(main())


def test_queue_full_raises_at_submit(tiny_model_dir):
    async def main():
        engine = await _started(tiny_model_dir, max_queue=1, max_batch_size=1)
        try:
            params = SamplingParams(max_tokens=100, temperature=0, ignore_eos=True)
            first = engine.generate(GenerationRequest("a", params, prompt="a"))
            await first.__anext__()  # running: the queue is empty again
            second = engine.generate(GenerationRequest("b", params, prompt="b"))  # waits: queue full
            with pytest.raises(QueueFullError):
                engine.generate(GenerationRequest("c", params, prompt="c"))
            await engine.abort("a")
            await engine.abort("b")
            await first.aclose()
            await second.aclose()
        finally:
            await engine.stop()

    run(main())


def test_health_tells_the_truth_when_every_step_fails(tiny_model_dir):
    async def main():
        engine = await _started(tiny_model_dir)
        try:
            from engine_helpers import wrap_forward

            def broken(*a, **k):
                raise RuntimeError("device lost")

            undo = wrap_forward(engine.core, broken)  # every forward pass of the engine fails
            params = SamplingParams(max_tokens=4, temperature=0)
            for i in range(3):
                events = [o async for o in engine.generate(GenerationRequest(f"e{i}", params, prompt="x"))]
                assert events[-1].error is not None and "device lost" in events[-1].error.message
            health = engine.health()
            assert not health.ok and "device lost" in health.detail
            undo()
            events = [o async for o in engine.generate(GenerationRequest("ok", params, prompt="x"))]
            assert events[-1].error is None and engine.health().ok
        finally:
            await engine.stop()

    run(main())

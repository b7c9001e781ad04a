"""The engine in its own process (engine/process.py): the same tokens as the in-thread engine,
aborts, a full queue, metrics and health across the pipe, and what a user sees when the engine
process dies or cannot load the model."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from codecomplete.engine import EngineConfig, QueueFullError, build_engine
from codecomplete.engine.async_engine import AsyncEngine
from codecomplete.engine.process import ProcessEngine
from codecomplete.engine.types import GenerationRequest, SamplingParams

GREEDY = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def _tokens(engine, request):
    events = [out async for out in engine.generate(request)]
    assert events[-1].finished and events[-1].error is None
    return [t for e in events for c in e.choices for t in c.token_ids], events


async def _idle(engine) -> None:
    """Until the engine reports nothing running or waiting (its status arrives every 50 ms)."""
    for _ in range(250):
        m = engine.metrics()
        if m.get("running") == 0 and m.get("queue_depth") == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the engine did not go idle: {engine.metrics()}")


def _config(model_dir, **kw):
    return EngineConfig(model=str(model_dir), served_names=["tiny"], process="on", **kw)


def test_build_engine_picks_the_process_engine_only_when_asked(tiny_model_dir):
    assert isinstance(build_engine(_config(tiny_model_dir)), ProcessEngine)
    off = EngineConfig(model=str(tiny_model_dir), process="off")
    assert isinstance(build_engine(off), AsyncEngine)
    with pytest.raises(ValueError, match="--engine-process"):
        EngineConfig(model=str(tiny_model_dir), process="maybe")


def test_same_tokens_aborts_queue_and_metrics_across_the_pipe(tiny_model_dir):
    async def main():
        local = build_engine(EngineConfig(model=str(tiny_model_dir), process="off"))
        await local.start()
        try:
            prompt = "def fib(n):\n    "
            want, _ = await _tokens(local, GenerationRequest("l", GREEDY, prompt=prompt))
        finally:
            await local.stop()

        # Without drafts `a` below takes its 200 steps (a random model's greedy loop is drafted
        # well enough to finish in a few dozen), which keeps it running while b and c arrive.
        engine = build_engine(_config(tiny_model_dir, max_queue=1, max_batch_size=1, speculative_tokens=0))
        assert not engine.health().ok  # not loaded yet
        await engine.start()
        try:
            assert engine.pid != os.getpid()
            assert engine.model_info.name == "tiny" and engine.model_info.context_length == 256
            got, events = await _tokens(engine, GenerationRequest("p", GREEDY, prompt=prompt))
            assert got == want  # the same engine, the same tokens
            assert events[0].prompt_token_ids and events[0].prompt_text
            assert engine.health().ok

            # One running, one waiting: the third finds the queue full (429 in the API). The
            # engine is frozen while b and c are sent, so both reach it while a still runs, unless
            # a loaded machine kept this process from freezing it before a's 200 steps were done
            # (seen in full runs beside other work): then the three are cleared and it is tried
            # again, since the point is what a full queue does.
            long = SamplingParams(max_tokens=200, temperature=0, ignore_eos=True)
            for attempt in range(3):
                await _idle(engine)
                cancelled = engine.metrics().get("requests_cancelled_total", 0)
                first = engine.generate(GenerationRequest(f"a{attempt}", long, prompt="a"))
                assert (await first.__anext__()).choices
                os.kill(engine.pid, signal.SIGSTOP)
                try:
                    second = engine.generate(GenerationRequest(f"b{attempt}", long, prompt="b"))
                    third = engine.generate(GenerationRequest(f"c{attempt}", long, prompt="c"))
                finally:
                    os.kill(engine.pid, signal.SIGCONT)
                try:
                    await third.__anext__()
                except QueueFullError:
                    break
                async for _out in first:  # a ended before the freeze: let it finish, clear b and c
                    pass
                for stream in (second, third):
                    await stream.aclose()
            else:
                pytest.fail("the engine could not be frozen while its first request ran, 3 times")
            await first.aclose()  # a client that went away: the request is aborted
            await engine.abort(f"b{attempt}")
            async for _out in second:  # b ends (cancelled) instead of hanging
                pass
            for _ in range(200):
                m = engine.metrics()
                if m.get("running") == 0 and m.get("requests_cancelled_total") == cancelled + 2:
                    break
                await asyncio.sleep(0.02)
            m = engine.metrics()
            assert m["running"] == 0 and m["requests_cancelled_total"] == cancelled + 2
            assert m["queue_depth"] == 0
        finally:
            await engine.stop()
        assert not engine.health().ok
        assert engine._proc.exitcode == 0  # it stopped when told, cleanly

    run(main())


def test_a_dead_engine_process_ends_streams_with_an_error_and_health_says_why(tiny_model_dir):
    async def main():
        engine = build_engine(_config(tiny_model_dir))
        await engine.start()
        try:
            # SIGTERM to the engine alone (systemd, `timeout`): ignored, the server decides.
            os.kill(engine.pid, signal.SIGTERM)
            await asyncio.sleep(0.3)
            assert engine.health().ok
            long = SamplingParams(max_tokens=100_000, temperature=0, ignore_eos=True)
            stream = engine.generate(GenerationRequest("k", long, prompt="x = 1"))
            assert (await stream.__anext__()).choices
            os.kill(engine.pid, signal.SIGKILL)
            last = None
            async for out in stream:
                last = out
            assert last is not None and last.finished and "engine process exited" in last.error.message
            health = engine.health()
            assert not health.ok and "exit code -9" in health.detail
            with pytest.raises(RuntimeError, match="engine process exited"):
                engine.generate(GenerationRequest("after", GREEDY, prompt="y"))
        finally:
            await engine.stop()  # returns although the process is already gone

    run(main())


def test_a_model_that_cannot_load_fails_start_with_the_engines_reason(tmp_path):
    async def main():
        (tmp_path / "config.json").write_text("{not json")
        engine = build_engine(EngineConfig(model=str(tmp_path), process="on"))
        with pytest.raises(RuntimeError) as err:
            await engine.start()
        assert str(err.value) and "not loaded yet" not in engine.health().detail
        assert engine.health().detail == str(err.value) and not engine.health().ok

    run(main())

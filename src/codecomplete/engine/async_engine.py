"""The asyncio front end: the EngineClient the API talks to.

`start()` loads the model off the event loop and starts the engine loop in a dedicated thread.
`generate()` queues a request and returns an async iterator of its outputs; leaving that iterator
early (a client that disconnected) aborts the request, which leaves the batch at the next step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

from codecomplete.engine.client import EngineClient
from codecomplete.engine.config import EngineConfig
from codecomplete.engine.memory import MemoryTrimmer
from codecomplete.engine.types import EngineHealth, GenerationRequest, ModelInfo, RequestOutput

log = logging.getLogger(__name__)


class AsyncEngine(EngineClient):
    def __init__(self, config: EngineConfig):
        self.config = config
        self.core = None
        self.device = None
        self.dtype = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._load_error = ""
        # Freed tensor memory goes back to the OS (engine/memory.py: RSS otherwise grows with
        # every batch shape seen).
        self.trimmer = MemoryTrimmer()
        self._outboxes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self._load)
        except Exception as exc:
            self._load_error = f"{type(exc).__name__}: {exc}"
            raise
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.core.run, args=(self._stop,), name="codecomplete-engine", daemon=True
        )
        self._thread.start()
        self.trimmer.start()

    def _load(self) -> None:
        core, self.model_info = load_core(self.config)
        self.device, self.dtype = core.runner.device, next(core.runner.model.parameters()).dtype
        self.core = core

    async def stop(self) -> None:
        self.trimmer.stop()
        self._stop.set()
        if self.core is not None:
            self.core.wake()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
            self._thread = None

    def generate(self, request: GenerationRequest) -> AsyncIterator[RequestOutput]:
        """Raises QueueFullError at once when the queue is full; RuntimeError before start()."""
        if self.core is None or self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the engine is not running")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[RequestOutput] = asyncio.Queue()
        outbox = self._outboxes.get(loop)
        if outbox is None:
            outbox = self._outboxes[loop] = _Outbox(loop)

        def sink(out: RequestOutput) -> None:
            outbox.put(queue, out)

        handle = self.core.submit(request, sink)
        return self._stream(handle, queue)

    async def _stream(self, handle, queue: asyncio.Queue[RequestOutput]) -> AsyncIterator[RequestOutput]:
        done = False
        try:
            while not done:
                out = await queue.get()
                done = out.finished
                yield out
        finally:
            if not done:
                self.core.abort_handle(handle)

    async def abort(self, request_id: str) -> None:
        if self.core is not None:
            self.core.abort(request_id)

    def health(self) -> EngineHealth:
        if self.core is None:
            return EngineHealth(ok=False, detail=self._load_error or "the model is not loaded yet")
        alive = self._thread is not None and self._thread.is_alive()
        core = self.core
        gone = "" if alive else "the engine loop is not running"
        return engine_health(gone, core.consecutive_failures, core.last_error, core.metrics())

    def metrics(self) -> dict[str, float]:
        return self.core.metrics() if self.core is not None else {"queue_depth": 0, "running": 0}


def load_core(cfg: EngineConfig):
    """Load the model into a new EngineCore (torch threads set first). Returns (core, ModelInfo).
    Used in-process (AsyncEngine) and in the engine process (engine/process.py)."""
    from codecomplete.engine.core import EngineCore

    threads = cfg.num_threads or default_cpu_threads(cfg.device)
    if threads:
        import torch

        torch.set_num_threads(threads)
    core = EngineCore.from_config(cfg)
    spec = core.spec
    names = cfg.served_names or [Path(cfg.model.rstrip("/")).name or cfg.model]
    info = ModelInfo(
        name=names[0],
        served_names=names,
        context_length=spec.context_length,
        vocab_size=spec.vocab_size,
        fim_template=spec.fim.name if spec.fim else None,
        created=int(time.time()),
    )
    model = core.runner.model
    log.info(
        "engine: %s (%s) on %s/%s, attention %s, context %d, FIM %s, max batch %d, step budget %d, queue %d",
        names[0],
        spec.family,
        core.runner.device,
        str(next(model.parameters()).dtype).removeprefix("torch."),
        model.config._attn_implementation,
        spec.context_length,
        info.fim_template,
        cfg.max_batch_size,
        cfg.max_step_tokens,
        cfg.max_queue,
    )
    return core, info


class _Outbox:
    """Outputs from the engine thread to one event loop, one wake-up for all of them.

    `call_soon_threadsafe` writes to the loop's self-pipe on every call (a system call on each
    side); a step that produces an output for 16 streams made 16 of them. Here the engine thread
    appends and schedules a flush only when none is pending, so one step's outputs reach the loop
    together. The flag is cleared before draining, so an output appended meanwhile either is
    drained by this flush or schedules the next one."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.items: deque = deque()
        self.scheduled = False

    def put(self, queue: asyncio.Queue, out: RequestOutput) -> None:
        self.items.append((queue, out))
        if not self.scheduled:
            self.scheduled = True
            try:
                self.loop.call_soon_threadsafe(self.flush)
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                self.items.clear()

    def flush(self) -> None:
        self.scheduled = False
        items = self.items
        while items:
            queue, out = items.popleft()
            queue.put_nowait(out)


FAILING_STEPS = 3  # consecutive steps that failed with nobody to blame before health says not ok


def engine_health(gone: str, failures: int, last_error: str, metrics: dict[str, float]) -> EngineHealth:
    """The health of a loaded engine, wherever it runs: `gone` says why its loop is not running
    ("" while it runs); `failures` consecutive failed steps, the last with `last_error`."""
    if gone:
        detail = gone
    elif failures >= FAILING_STEPS:
        detail = f"the last {failures} model steps failed: {last_error}"
    else:
        detail = "ok"
    return EngineHealth(
        ok=detail == "ok",
        detail=detail,
        queue_depth=int(metrics.get("queue_depth", 0)),
        running=int(metrics.get("running", 0)),
    )


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS tells it)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_cpu_threads(device: str) -> int | None:
    """Torch threads when --num-threads is not given: on the CPU, all cores but one, which the
    server's event loop (HTTP, SSE framing) needs. Measured on 2 cores with the bundled model
    (`make bench`, 2026-12-02): 2 torch threads made a lone request's latency 1050 ms against
    530 ms with 1, as the engine's threads and the event loop took turns on the cores. None: leave
    torch's default (a GPU, or a single-core machine)."""
    if device not in ("cpu", "auto"):
        return None
    cores = usable_cores()
    return max(1, cores - 1) if cores > 1 else None

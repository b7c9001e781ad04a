"""The engine in its own process (vLLM v1's shape: an API server process and an engine-core process).

In one process the engine thread and the event loop share the GIL. Profiled on the 2-core bench
machine (py-spy of `codecomplete serve` under one streaming client), the engine thread spent ~12%
of its time waiting for the GIL right after waking the loop (`_write_to_self`): every step's
outputs wake the loop, which then runs HTTP, JSON and SSE framing in Python while the engine's next
step waits for the interpreter. Here the engine runs `EngineCore` in a child process started with
`spawn` (a fresh interpreter, no inherited threads or locks), and the server process keeps only the
HTTP side; neither ever waits for the other's Python.

The two talk over one `multiprocessing` pipe:

    API -> engine   ("submit", handle, GenerationRequest) | ("abort", handle) | ("abort_id", id) | ("stop",)
    engine -> API   ("ready", ModelInfo) | ("failed", text) at start, then
                    ("out", [(handle, RequestOutput), ...]) once per engine step,
                    ("rejected", handle, retry_after) for a full queue,
                    ("status", metrics, failures, last_error) after work and every half second idle

A step's outputs for all its streams travel as one message, read by the event loop itself
(`add_reader` on the pipe), so there is no extra thread in the server process. Metrics and health
are the engine's latest status message (at most ~50 ms old while it works, and sent before the
last event of any request, so a client that has its answer sees it counted). When the engine
process dies (killed, out of memory), every open stream ends with an error event and health turns
not-ok with the exit code; `serve` then stops the server with an error (exit status 1, after the
streams have their error event) so that its supervisor (Docker's restart policy, systemd) starts it
again: a server whose engine is gone could only answer errors.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from codecomplete.engine.async_engine import engine_health, usable_cores
from codecomplete.engine.client import EngineClient, QueueFullError
from codecomplete.engine.config import EngineConfig
from codecomplete.engine.types import EngineError, EngineHealth, GenerationRequest, RequestOutput

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 0.05  # while working: the most often a status message is sent
IDLE_STATUS_S = 0.5  # while idle


class ProcessEngine(EngineClient):
    """EngineClient over an engine process (`serve --engine-process`, the default)."""

    def __init__(self, config: EngineConfig, log_level: int | None = None):
        self.config = config
        self.log_level = log_level if log_level is not None else logging.getLogger().getEffectiveLevel()
        self._proc: Any = None
        self._conn: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streams: dict[int, asyncio.Queue] = {}
        self._handles = itertools.count(1)
        self._metrics: dict[str, float] = {"queue_depth": 0, "running": 0}
        self._failures = 0
        self._last_error = ""
        self._load_error = ""
        self._dead = ""  # why the engine process is gone ("" while it runs)
        self._stopping = False
        # Called once with the reason when the engine process dies on its own (`serve` sets it
        # to stop the server with an error, so that its supervisor restarts it: a server whose
        # engine is gone can only answer errors).
        self.on_dead: Callable[[str], None] | None = None
        self.model_info = None  # set by start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        mine, theirs = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(
            target=engine_process_main,
            args=(self.config, theirs, self.log_level),
            name="codecomplete-engine",
            daemon=True,
        )
        self._proc.start()
        theirs.close()
        self._conn = mine
        try:
            msg = await asyncio.to_thread(mine.recv)
        except (EOFError, OSError):
            code = await asyncio.to_thread(self._exit_code)
            self._load_error = f"the engine process exited while loading the model (exit code {code})"
            raise RuntimeError(self._load_error) from None
        if msg[0] == "failed":
            self._load_error = msg[1]
            await asyncio.to_thread(self._proc.join, 10)
            raise RuntimeError(msg[1])
        self.model_info = msg[1]
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(mine.fileno(), self._on_readable)
        log.info("engine process %d is serving", self._proc.pid)

    def _exit_code(self):
        self._proc.join(10)
        return self._proc.exitcode

    async def stop(self) -> None:
        if self._proc is None:
            return
        self._stopping = True
        if not self._dead and self.model_info is not None and self._proc.is_alive():
            self._send(("stop",))
        await asyncio.to_thread(self._proc.join, 30)
        if self._proc.is_alive():  # (it ignores SIGTERM: see engine_process_main)
            log.warning("the engine process did not stop within 30 s; killing it")
            self._proc.kill()
            await asyncio.to_thread(self._proc.join, 5)
        self._gone("the engine stopped")

    # --- requests ---------------------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> AsyncIterator[RequestOutput]:
        """Raises RuntimeError when the engine is not running; a full queue raises QueueFullError
        from the iterator's first step (the API answers 429 either way)."""
        if self._conn is None or self._dead:
            raise RuntimeError(self._dead or "the engine is not running")
        handle = next(self._handles)
        queue: asyncio.Queue = asyncio.Queue()
        self._streams[handle] = queue
        self._send(("submit", handle, request))
        return self._stream(handle, queue)

    async def _stream(self, handle: int, queue: asyncio.Queue) -> AsyncIterator[RequestOutput]:
        done = False
        try:
            while not done:
                item = await queue.get()
                if isinstance(item, BaseException):
                    done = True
                    raise item
                done = item.finished
                yield item
        finally:
            self._streams.pop(handle, None)
            if not done and not self._dead:
                self._send(("abort", handle))

    async def abort(self, request_id: str) -> None:
        if not self._dead and self._conn is not None:
            self._send(("abort_id", request_id))

    def _send(self, msg) -> None:
        try:
            self._conn.send(msg)
        except (OSError, ValueError) as exc:  # the engine process is gone
            self._gone(f"the engine process is gone ({type(exc).__name__}: {exc})")

    # --- what the engine sends --------------------------------------------------------------

    def _on_readable(self) -> None:
        conn = self._conn
        try:
            while conn.poll():
                self._dispatch(conn.recv())
        except (EOFError, OSError):
            if not self._stopping:
                self._proc.join(1)  # for its exit code
            self._gone(f"the engine process exited (exit code {self._proc.exitcode})")

    def _dispatch(self, msg) -> None:
        kind = msg[0]
        if kind == "out":
            for handle, out in msg[1]:
                queue = self._streams.get(handle)
                if queue is not None:
                    queue.put_nowait(out)
        elif kind == "status":
            self._metrics, self._failures, self._last_error = msg[1], msg[2], msg[3]
        elif kind == "rejected":
            queue = self._streams.get(msg[1])
            if queue is not None:
                queue.put_nowait(QueueFullError(msg[2]))

    def _gone(self, why: str) -> None:
        """The engine process is gone: every open stream ends with an error event. Unless stop()
        asked for it, that is logged as an error and reported to `on_dead`."""
        if self._dead:
            return
        crashed = not self._stopping
        self._dead = why if crashed else "the engine stopped"
        if crashed:
            log.error("%s; open requests end with an error", why)
        if self._loop is not None and self._conn is not None:
            try:
                self._loop.remove_reader(self._conn.fileno())
            except (OSError, ValueError):
                pass
        for handle, queue in list(self._streams.items()):
            queue.put_nowait(
                RequestOutput(
                    str(handle), finished=True, error=EngineError(f"{self._dead}; the request was lost")
                )
            )
        self._streams.clear()
        if crashed and self.on_dead is not None:
            self.on_dead(why)

    # --- health and metrics -----------------------------------------------------------------

    def health(self) -> EngineHealth:
        if self.model_info is None:
            return EngineHealth(ok=False, detail=self._load_error or "the model is not loaded yet")
        return engine_health(self._dead, self._failures, self._last_error, self._metrics)

    def metrics(self) -> dict[str, float]:
        return dict(self._metrics)


# --- the engine process ---------------------------------------------------------------------


def engine_process_main(config: EngineConfig, conn, log_level: int) -> None:
    """The child: load the model, then run the engine loop until told to stop or the server
    process goes away (its end of the pipe closes)."""
    # Ctrl-C reaches the whole process group, and `timeout` or systemd's default KillMode send
    # SIGTERM to every process of the service: the server process decides when the engine stops
    # (after its graceful drain), so the engine ignores both. It exits when told to or when the
    # server process is gone (the pipe closes); SIGKILL still ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from codecomplete.engine.async_engine import load_core
    from codecomplete.engine.memory import MemoryTrimmer

    try:
        core, info = load_core(config)
    except Exception as exc:
        log.exception("the engine process could not load the model")
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", info))
    trimmer = MemoryTrimmer()
    trimmer.start()
    try:
        _EngineLoop(core, conn).run()
    finally:
        trimmer.stop()
    # Everything the server needs was sent. Run the exit handlers (multiprocessing's unlink the
    # semaphores that imported libraries made) but skip the interpreter's teardown: unloading torch
    # and the model took seconds on a loaded machine, inside the server's shutdown budget.
    atexit._run_exitfuncs()
    logging.shutdown()
    os._exit(0)


class _EngineLoop:
    """The engine's side of the pipe: a thread receives commands, the main thread steps."""

    def __init__(self, core, conn):
        self.core = core
        self.conn = conn
        self.stop = threading.Event()
        self.send_lock = threading.Lock()
        self.pending: list[tuple[int, RequestOutput]] = []
        self.pending_lock = threading.Lock()
        self.entries: dict[int, object] = {}  # handle -> the core's submit handle
        self.last_status = 0.0

    def run(self) -> None:
        receiver = threading.Thread(target=self._receive, name="codecomplete-engine-rx", daemon=True)
        receiver.start()
        self.core.run(self.stop, after_step=self._after_step, idle_s=IDLE_STATUS_S)
        self._flush()  # fail_all's events for what was still running
        self._status(time.monotonic())

    def _after_step(self, worked: bool) -> None:
        now = time.monotonic()
        with self.pending_lock:
            ended = any(out.finished for _, out in self.pending)
        if ended or not worked or now - self.last_status >= STATUS_INTERVAL_S:
            # Before the outputs: a client that reads /metrics right after its last event sees
            # its own request counted (one pipe, so the order holds). Idle: the latest counters.
            self._status(now)
        self._flush()

    def _receive(self) -> None:
        core = self.core
        try:
            while True:
                msg = self.conn.recv()
                kind = msg[0]
                if kind == "submit":
                    self._submit(msg[1], msg[2])
                elif kind == "abort":
                    entry = self.entries.pop(msg[1], None)
                    if entry is not None:
                        core.abort_handle(entry)
                elif kind == "abort_id":
                    core.abort(msg[1])
                elif kind == "stop":
                    break
        except (EOFError, OSError):
            log.warning("the server process closed the engine pipe; the engine stops")
        self.stop.set()
        core.wake()

    def _submit(self, handle: int, request: GenerationRequest) -> None:
        def sink(out: RequestOutput) -> None:
            with self.pending_lock:
                self.pending.append((handle, out))
            if out.finished:
                self.entries.pop(handle, None)

        try:
            self.entries[handle] = self.core.submit(request, sink)
        except QueueFullError as exc:
            self._send(("rejected", handle, exc.retry_after))

    def _flush(self) -> None:
        with self.pending_lock:
            if not self.pending:
                return
            items, self.pending = self.pending, []
        self._send(("out", items))

    def _status(self, now: float) -> None:
        self.last_status = now
        core = self.core
        self._send(("status", core.metrics(), core.consecutive_failures, core.last_error))

    def _send(self, msg) -> None:
        try:
            with self.send_lock:
                self.conn.send(msg)
        except (OSError, ValueError):  # the server process is gone
            self.stop.set()


def use_engine_process(setting: str) -> bool:
    """`--engine-process auto|on|off`: auto = on when the machine has more than one core (with
    one, the two processes would only take turns)."""
    if setting in ("on", "off"):
        return setting == "on"
    return usable_cores() > 1

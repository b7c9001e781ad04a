"""Several engine requests (one per prompt) read as one stream, and aborted together.

Each prompt's `engine.generate()` is driven by its own task so all prompts reach the engine at
once; their outputs arrive on one queue tagged with the prompt's index. `close()` cancels what is
still running: the cancellation lands inside the engine's iterator (closing it, which aborts the
request), and `engine.abort()` is called for any request that had not finished, so a client that
goes away frees its batch slots at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from codecomplete.api.editor import Superseded
from codecomplete.api.errors import APIError, to_api_error
from codecomplete.api.features import check_supported
from codecomplete.engine.client import EngineClient
from codecomplete.engine.types import GenerationRequest, RequestOutput


@dataclass
class Event:
    prompt_index: int
    output: RequestOutput | None = None
    exception: BaseException | None = None  # raised by generate(), e.g. QueueFullError

    def result(self) -> RequestOutput:
        """The engine's output, or the API error it stands for (raised)."""
        if self.exception is not None:
            raise to_api_error(self.exception)
        assert self.output is not None
        if self.output.error is not None:
            raise APIError.from_engine(self.output.error)
        return self.output


class OutputStream:
    def __init__(self, engine: EngineClient, requests: list[GenerationRequest]):
        self.engine = engine
        self.requests = requests
        self.finished = [False] * len(requests)
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self._superseded = False

    @property
    def all_finished(self) -> bool:
        return all(self.finished)

    def start(self) -> OutputStream:
        """Raises APIError (400) when a request uses a feature the engine declares unsupported."""
        check_supported(self.engine, self.requests)
        self._tasks = [asyncio.ensure_future(self._pump(i, r)) for i, r in enumerate(self.requests)]
        return self

    async def _pump(self, index: int, request: GenerationRequest) -> None:
        iterator: AsyncIterator[RequestOutput] | None = None
        try:
            iterator = self.engine.generate(request)
            async for output in iterator:
                if output.finished:
                    self.finished[index] = True
                self._queue.put_nowait(Event(index, output=output))
                if output.finished:
                    break
            else:
                if not self.finished[index]:
                    # The engine ended the stream without a finished event: treat as finished.
                    self.finished[index] = True
                    self._queue.put_nowait(
                        Event(index, output=RequestOutput(request.request_id, finished=True))
                    )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # QueueFullError, or an engine bug: reported to the reader
            self.finished[index] = True
            self._queue.put_nowait(Event(index, exception=exc))
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def next(self) -> Event:
        return await self._queue.get()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while not ((self.all_finished or self._superseded) and self._queue.empty()):
            yield await self._queue.get()

    def supersede(self) -> None:
        """A newer request of the same editor session replaced this one (api/editor.py, which has
        aborted it in the engine already): the reader gets a `Superseded` exception next."""
        if self.all_finished or self._closed or self._superseded:
            return
        self._superseded = True
        self._queue.put_nowait(Event(0, exception=Superseded()))
        # A pump that has not reached the engine yet never will; one that has closes its iterator
        # (aborting again), and close() aborts what is unfinished once more: an abort that lands
        # while the engine moves the request from its inbox to its batch can be missed.
        for task in self._tasks:
            task.cancel()

    async def close(self) -> bool:
        """Stop whatever still runs. Returns True when something was aborted."""
        if self._closed:
            return False
        self._closed = True
        unfinished = [r.request_id for r, done in zip(self.requests, self.finished, strict=True) if not done]
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for request_id in unfinished:
            with contextlib.suppress(Exception):
                await self.engine.abort(request_id)
        return bool(unfinished)

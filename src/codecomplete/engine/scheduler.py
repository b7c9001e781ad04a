"""Which requests join the running batch this step. Pure Python: tested without a model.

Admission in priority order (lower first; first come, first served among equals) under two limits: the batch's sequence count (--max-batch-size; a request with
n choices takes n slots) and a per-step prefill token budget (--max-step-tokens). A prompt that
does not fit the budget left in a step is prefilled in chunks over several steps (it stays at the
head of the queue meanwhile, and the running batch keeps decoding between chunks), unless it
cannot be chunked (echo with logprobs), in which case it runs alone. The waiting queue is bounded
(--max-queue).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from codecomplete.engine.client import QueueFullError
from codecomplete.engine.sequence import RequestState


@dataclass
class SchedulerOutput:
    prefill: list[RequestState] = field(default_factory=list)  # finish their prefill and join this step
    aborted: list[RequestState] = field(default_factory=list)  # left the queue or the batch this step
    chunk: tuple[RequestState, int] | None = None  # (request, tokens): a part of a long prompt
    prefill_tokens: int = 0


class Scheduler:
    def __init__(self, max_batch_size: int, max_step_tokens: int, max_queue: int):
        self.max_batch_size = max_batch_size
        self.max_step_tokens = max_step_tokens
        self.max_queue = max_queue
        self.waiting: deque[RequestState] = deque()
        self.running: list[RequestState] = []

    def add(self, req: RequestState) -> None:
        if len(self.waiting) >= self.max_queue:
            raise QueueFullError()
        # Lower priority values go first; equal ones keep their arrival order.
        prio = req.request.params.priority
        pos = len(self.waiting)
        while pos > 0 and self.waiting[pos - 1].request.params.priority > prio:
            pos -= 1
        self.waiting.insert(pos, req)

    @property
    def running_seqs(self) -> int:
        # A request admitted this step has no sequences yet: it holds num_seqs slots.
        return sum(len(r.unfinished()) if r.seqs else r.num_seqs for r in self.running if not r.finished)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self, prefill_cost: Callable[[RequestState], int] | None = None) -> SchedulerOutput:
        """`prefill_cost(req)`: prompt tokens still to prefill (default: the whole prompt)."""
        cost = prefill_cost or (lambda r: r.num_prompt_tokens)
        out = SchedulerOutput()
        # Aborted requests leave first, so their slots are free for this step's admissions.
        for req in [r for r in self.waiting if r.aborted]:
            self.waiting.remove(req)
            out.aborted.append(req)
        for req in [r for r in self.running if r.aborted]:
            self.running.remove(req)
            out.aborted.append(req)
        self.running = [r for r in self.running if not r.finished]

        slots = self.max_batch_size - self.running_seqs
        while self.waiting:
            req = self.waiting[0]
            tokens = cost(req)
            if req.num_seqs > slots:
                break
            room = self.max_step_tokens - out.prefill_tokens
            if tokens > room:
                if req.chunkable and room > 0:
                    out.chunk = (req, room)  # stays at the head of the queue
                    out.prefill_tokens += room
                    break
                if out.prefill:
                    break  # an unchunkable prompt over the budget runs alone, next step
            self.waiting.popleft()
            out.prefill.append(req)
            out.prefill_tokens += tokens
            slots -= req.num_seqs
        self.running.extend(out.prefill)
        return out

    def finish(self, req: RequestState) -> None:
        """A request ended (all choices done, or an error): it leaves the running list."""
        req.finished = True
        if req in self.running:
            self.running.remove(req)

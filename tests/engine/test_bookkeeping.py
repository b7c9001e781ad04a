"""Scheduler, prefix-cache and stopping bookkeeping with synthetic token ids: no model."""

from __future__ import annotations

import pytest

from codecomplete.engine.client import QueueFullError
from codecomplete.engine.prefix_cache import PrefixCache, common_prefix_len
from codecomplete.engine.scheduler import Scheduler
from codecomplete.engine.sequence import RequestState
from codecomplete.engine.stopping import StopChecker
from codecomplete.engine.types import GenerationRequest, SamplingParams


def req(rid: str, n_tokens: int, n: int = 1, best_of: int | None = None, priority: int = 0) -> RequestState:
    params = SamplingParams(n=n, best_of=best_of, priority=priority)
    return RequestState(
        request=GenerationRequest(rid, params, prompt_token_ids=list(range(n_tokens))),
        prompt_ids=list(range(n_tokens)),
        prompt_text="",
        max_tokens=16,
        stop_token_ids=set(),
        sink=lambda out: None,
    )


def test_admission_respects_batch_size_counting_choices():
    s = Scheduler(max_batch_size=4, max_step_tokens=10_000, max_queue=10)
    for r in (req("a", 5, n=3), req("b", 5, n=2), req("c", 5)):
        s.add(r)
    out = s.schedule()
    assert [r.request_id for r in out.prefill] == ["a"]  # b (2 slots) does not fit in the 1 left
    assert s.running_seqs == 3  # a holds its 3 slots before its sequences exist
    assert s.schedule().prefill == []


def test_admission_is_fifo_under_token_budget():
    s = Scheduler(max_batch_size=32, max_step_tokens=100, max_queue=10)
    s.add(req("x", 40))
    s.add(req("y", 40))
    s.add(req("z", 40))
    out = s.schedule()
    assert [r.request_id for r in out.prefill] == ["x", "y"]  # 80 <= 100 < 120
    assert out.chunk == (s.waiting[0], 20)  # z starts with the 20 tokens left in the budget
    assert [r.request_id for r in s.schedule().prefill] == ["z"]


def test_queue_is_bounded():
    s = Scheduler(max_batch_size=1, max_step_tokens=100, max_queue=2)
    s.add(req("a", 1))
    s.add(req("b", 1))
    with pytest.raises(QueueFullError):
        s.add(req("c", 1))


def test_aborted_requests_leave_waiting_and_running_first():
    s = Scheduler(max_batch_size=2, max_step_tokens=100, max_queue=10)
    a, b, c = req("a", 3), req("b", 3), req("c", 3)
    for r in (a, b, c):
        s.add(r)
    s.schedule()
    assert s.running == [a, b]
    a.aborted = True
    c.aborted = True
    out = s.schedule()
    assert set(map(id, out.aborted)) == {id(a), id(c)}
    assert s.running == [b] and not s.waiting


def test_finished_request_frees_its_slots():
    s = Scheduler(max_batch_size=1, max_step_tokens=100, max_queue=10)
    a, b = req("a", 3), req("b", 3)
    s.add(a)
    s.add(b)
    s.schedule()
    from codecomplete.engine.sequence import Sequence

    a.seqs.append(Sequence(seq_id=1, request=a, index=0, seed=0))
    assert s.schedule().prefill == []  # full
    s.finish(a)
    assert s.schedule().prefill == [b]


def test_common_prefix_len():
    assert common_prefix_len((1, 2, 3, 4), (1, 2, 9)) == 2
    assert common_prefix_len((1, 2), (1, 2, 3)) == 2
    assert common_prefix_len((5,), (1,)) == 0
    a = tuple(range(1000))
    assert common_prefix_len(a, a[:777] + (-1,) + a[778:]) == 777


def test_prefix_cache_longest_match_lru_and_bound():
    c = PrefixCache(max_size=100, min_tokens=4)
    c.insert(list(range(30)), "A")
    c.insert([9] * 40, "B")
    n, v = c.lookup(list(range(25)) + [99, 98])
    assert (n, v) == (25, "A")
    n, v = c.lookup(list(range(30)))  # whole prompt cached: the last token is still run
    assert (n, v) == (29, "A")
    assert c.lookup([7] * 20) == (0, None)
    assert c.hits == 2 and c.lookups == 3
    c.insert([1] * 50, "C")  # 30 + 40 + 50 > 100: the least recently used (B) goes
    assert [k[0] for k in c.entries] == [0, 1]
    assert c.size == 80


def test_prefix_cache_drops_entries_made_redundant():
    c = PrefixCache(max_size=1000, min_tokens=2)
    c.insert([1, 2, 3], "short")
    c.insert([1, 2, 3, 4, 5], "long")
    assert list(c.entries) == [(1, 2, 3, 4, 5)]
    assert c.lookup([1, 2, 3, 4, 5, 6]) == (5, "long")


def feed(checker: StopChecker, pieces: list[str]) -> tuple[str, bool, list[str]]:
    """Send pieces like a stream; return the final text, whether it stopped, what was sent."""
    text, sent, chunks = "", 0, []
    for i, piece in enumerate(pieces):
        text += piece
        safe, stopped = checker.check(text, final=i == len(pieces) - 1)
        if stopped:
            text = text[:safe]
        chunks.append(text[sent:safe])
        sent = max(sent, safe)
        if stopped:
            return text, True, chunks
    return text, False, chunks


def test_stop_string_across_pieces_is_cut_and_never_sent():
    text, stopped, chunks = feed(StopChecker(["\ndef "]), ["x = 1", "\n", "de", "f foo"])
    assert stopped and text == "x = 1"
    assert "".join(chunks) == "x = 1"
    assert chunks[1] == ""  # "\n" held: it could start the stop string


def test_held_text_is_released_when_it_stops_matching():
    text, stopped, chunks = feed(StopChecker(["\ndef "]), ["a", "\nd", "x", "y"])
    assert not stopped and "".join(chunks) == "a\ndxy"
    assert chunks[1] == "" and chunks[2] == "\ndx"


def test_first_occurrence_of_any_stop_wins():
    text, stopped, _ = feed(StopChecker(["END", "b"]), ["aaENDb"])
    assert stopped and text == "aa"


def test_indent_trim_streams_only_decided_lines():
    checker = StopChecker([], indent_trim=4)
    text, stopped, chunks = feed(checker, ["foo()\n", "    ", "    bar()\n", "\n", "baz()\n", "more"])
    assert stopped and text == "foo()\n        bar()"
    assert "".join(chunks) == text


def test_long_prompts_are_prefilled_in_chunks_under_the_budget():
    s = Scheduler(max_batch_size=32, max_step_tokens=100, max_queue=10)
    long, short = req("long", 250), req("short", 30)
    s.add(short)
    s.add(long)
    done = {"long": 0}

    def cost(r):
        return r.num_prompt_tokens - done.get(r.request_id, 0)

    out = s.schedule(cost)
    assert out.prefill == [short] and out.chunk == (long, 70)  # the rest of this step's budget
    done["long"] += 70
    out = s.schedule(cost)
    assert out.prefill == [] and out.chunk == (long, 100)
    done["long"] += 100
    out = s.schedule(cost)
    assert out.prefill == [long] and out.chunk is None  # the last 80 tokens: it joins the batch
    assert out.prefill_tokens == 80


def test_unchunkable_prompt_over_budget_runs_alone():
    s = Scheduler(max_batch_size=32, max_step_tokens=100, max_queue=10)
    echo = req("echo", 300)
    echo.request.params.echo, echo.request.params.logprobs = True, 1
    s.add(req("a", 10))
    s.add(echo)
    assert [r.request_id for r in s.schedule().prefill] == ["a"]
    assert [r.request_id for r in s.schedule().prefill] == ["echo"]


def test_indent_trim_keeps_block_continuations():
    checker = StopChecker([], indent_trim=4)
    text, stopped, chunks = feed(
        checker, ["if a:\n", "        b()\n", "    else:\n", "        c()\n", "    d()\n"]
    )
    assert stopped and text == "if a:\n        b()\n    else:\n        c()"
    assert "".join(chunks) == text


def test_stop_string_and_indent_trim_together():
    checker = StopChecker(["\n\n#"], indent_trim=4)
    text, stopped, _ = feed(checker, ["x = 1\n", "        y\n", "\n#", " next"])
    assert stopped and text == "x = 1\n        y"


def test_interactive_requests_are_admitted_before_long_ones():
    # Only one slot: the single-line request (priority -1) that arrived last runs first; equal
    # priorities keep their arrival order.
    s = Scheduler(max_batch_size=1, max_step_tokens=10_000, max_queue=10)
    for r in (req("long1", 5, priority=1), req("long2", 5, priority=1), req("line", 5, priority=-1)):
        s.add(r)
    order = []
    for _ in range(3):
        (admitted,) = s.schedule().prefill
        order.append(admitted.request_id)
        s.finish(admitted)
    assert order == ["line", "long1", "long2"]

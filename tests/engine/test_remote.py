"""engine/remote.py's ChoiceTracker: the local engine's stop / trim / deadline rules applied to the
text deltas a remote engine streams (pure Python, no model)."""

from __future__ import annotations

from codecomplete.engine.remote import ChoiceTracker
from codecomplete.engine.types import SamplingParams, TokenLogprob


def feed(tracker: ChoiceTracker, pieces: list[str], finish: str | None = "length"):
    out = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        lps = [TokenLogprob(token=piece, logprob=-0.5)] if tracker.params.logprobs is not None else None
        d = tracker.add(piece, logprobs=lps, finish_reason=finish if last else None)
        if d is not None:
            out.append(d)
    return out


def test_a_stop_string_split_across_deltas_is_cut_and_never_sent():
    t = ChoiceTracker(0, SamplingParams(stop=["\ndef "]))
    deltas = feed(t, ["x = 1", "\nd", "ef g():", "\n    pass"])
    assert "".join(d.text for d in deltas) == "x = 1"
    assert deltas[-1].finish_reason == "stop" and t.finished
    assert t.add("more", finish_reason="length") is None  # a choice ends once


def test_logprobs_are_released_with_their_text_and_dropped_past_a_stop():
    t = ChoiceTracker(0, SamplingParams(stop=["STOP"], logprobs=1))
    deltas = feed(t, ["a", "b", "ST", "OP", "c"])
    entries = [e for d in deltas for e in d.logprobs or []]
    assert [e.token for e in entries] == ["a", "b"] and [e.text_offset for e in entries] == [0, 1]


def test_trim_by_indentation_ends_the_block():
    t = ChoiceTracker(0, SamplingParams(indent_trim=4))
    deltas = feed(t, ["    return 1\n", "\n", "def g():\n"], finish=None)
    assert "".join(d.text for d in deltas) == "    return 1" and deltas[-1].finish_reason == "stop"


def test_expire_ends_at_the_last_line_boundary_of_what_was_not_sent():
    # As in the local engine: text already sent stays; held-back text past the last line break goes.
    t = ChoiceTracker(0, SamplingParams(stop=["\nend"]))
    sent = feed(t, ["a = 1\nb = 2", "\nen"], finish=None)
    assert "".join(d.text for d in sent) == "a = 1\nb = 2"  # "\nen" may become the stop string
    d = t.expire()
    assert t.text == "a = 1\nb = 2" and d.text == "" and d.finish_reason == "length"
    assert t.expire() is None


def test_a_remote_stop_finish_is_kept():
    t = ChoiceTracker(0, SamplingParams(stop=["\n"]))
    assert feed(t, ["abc"], finish="stop")[-1].finish_reason == "stop"
    t = ChoiceTracker(0, SamplingParams())
    assert feed(t, ["abc"], finish="length")[-1].finish_reason == "length"

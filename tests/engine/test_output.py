"""The torch-free half of an engine step (engine/output.py): a step's sampled token ids applied to
requests, on synthetic token ids with a toy tokenizer, no model and no torch."""

from __future__ import annotations

import subprocess
import sys

from codecomplete.engine.detokenizer import IncrementalDetokenizer
from codecomplete.engine.output import OutputProcessor
from codecomplete.engine.sequence import RequestState, Sequence
from codecomplete.engine.stopping import StopChecker
from codecomplete.engine.types import GenerationRequest, SamplingParams

VOCAB = ["<eos>", "def", " f", "(", "):", "\n", "    ", "return", " 1", "#", "x"]
EOS = 0


class ToyTokenizer:
    def decode(self, ids, skip_special_tokens=True, clean_up_tokenization_spaces=False):
        return "".join(VOCAB[i] for i in ids if not (skip_special_tokens and i == EOS))


def ids(*pieces: str) -> list[int]:
    return [VOCAB.index(p) for p in pieces]


class Harness:
    def __init__(self):
        self.counters: dict[str, int] = {}
        self.counters = dict.fromkeys(
            (
                "tokens_generated_total",
                "tokens_generated_after_cancel_total",
                "requests_deadline_total",
                "requests_finished_total",
            ),
            0,
        )
        self.finished, self.failed = [], []
        self.out = OutputProcessor(
            ToyTokenizer(),
            self.counters,
            self.finished.append,
            lambda req, why: self.failed.append((req.request_id, why)),
        )

    def request(self, rid: str, params: SamplingParams, prompt=("def", " f")) -> RequestState:
        events = []
        req = RequestState(
            request=GenerationRequest(rid, params, prompt="".join(prompt)),
            prompt_ids=ids(*prompt),
            prompt_text="".join(prompt),
            max_tokens=params.max_tokens,
            stop_token_ids=set() if params.ignore_eos else {EOS},
            sink=events.append,
        )
        req.events = events
        for j in range(params.num_sequences):
            seq = Sequence(seq_id=j, request=req, index=j, seed=j)
            seq.detok = IncrementalDetokenizer(ToyTokenizer(), req.prompt_ids)
            seq.stopper = StopChecker(params.stop, params.indent_trim)
            req.seqs.append(seq)
        return req

    def step(self, seqs, tokens, logprobs=None, failed=None):
        self.out.apply(seqs, tokens, logprobs, None, failed)
        self.out.emit()


def text(req) -> str:
    return "".join(c.text for e in req.events for c in e.choices)


def reasons(req) -> list[str]:
    return [c.finish_reason for e in req.events for c in e.choices if c.finish_reason]


def test_stop_string_across_tokens_is_cut_and_never_sent():
    h = Harness()
    req = h.request("a", SamplingParams(max_tokens=10, stop=["):\n"]))
    seq = req.seqs[0]
    for tok in ids("(", "):"):
        h.step([seq], [tok])
    assert text(req) == "("  # "):" could begin the stop string: held back
    h.step([seq], ids("\n"))
    assert text(req) == "(" and reasons(req) == ["stop"]
    assert req.events[-1].finished and h.finished == [req]


def test_eos_and_max_tokens_end_a_choice():
    h = Harness()
    eos = h.request("eos", SamplingParams(max_tokens=10))
    length = h.request("len", SamplingParams(max_tokens=2, ignore_eos=True))
    h.step([eos.seqs[0], length.seqs[0]], ids("(", "("))
    h.step([eos.seqs[0], length.seqs[0]], [EOS, EOS])
    assert text(eos) == "(" and reasons(eos) == ["stop"]
    assert [t for e in eos.events for c in e.choices for t in c.token_ids] == ids("(")  # EOS not sent
    assert text(length) == "(" and reasons(length) == ["length"]  # ignore_eos: EOS is text ("")
    assert h.counters["tokens_generated_total"] == 4 and h.counters["requests_finished_total"] == 2


def test_a_failed_row_ends_only_its_request():
    h = Harness()
    a, b = h.request("a", SamplingParams(max_tokens=3)), h.request("b", SamplingParams(max_tokens=3))
    h.step([a.seqs[0], b.seqs[0]], ids("(", "("), failed={0: "NaN"})
    assert h.failed == [("a", "NaN")]
    assert text(b) == "(" and not a.events


def test_indent_trim_streams_only_decided_lines():
    h = Harness()
    req = h.request("i", SamplingParams(max_tokens=20, indent_trim=0), prompt=("def", " f", "(", "):", "\n"))
    seq = req.seqs[0]
    for tok in ids("    ", "return", " 1", "\n", "def"):
        h.step([seq], [tok])
    assert text(req) == "    return 1" and reasons(req) == ["stop"]


def test_best_of_ranks_choices_and_sends_them_once_at_the_end():
    h = Harness()
    req = h.request("b", SamplingParams(max_tokens=2, n=1, best_of=3, ignore_eos=True))
    seqs = req.seqs
    h.step(seqs, ids("x", "#", "("), logprobs=[-3.0, -0.5, -1.0])
    assert not req.events  # nothing streams before the ranking
    h.step(seqs, ids("x", "#", "("), logprobs=[-3.0, -0.5, -1.0])
    (event,) = req.events
    assert event.finished and [c.text for c in event.choices] == ["##"]


def test_aborted_request_takes_no_tokens():
    h = Harness()
    req = h.request("c", SamplingParams(max_tokens=5))
    req.aborted = True
    h.step(req.seqs, ids("("))
    assert not req.events and req.seqs[0].output_ids == []
    assert h.counters["tokens_generated_after_cancel_total"] == 1


def test_output_processing_imports_no_torch():
    code = (
        "import sys; import codecomplete.engine.output, codecomplete.engine.scheduler, "
        "codecomplete.engine.prefix_cache; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

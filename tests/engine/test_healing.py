"""Token healing (engine/healing.py): the vocabulary prefix index and tail rules on hand-built
vocabularies, then the engine on the shipped model (its trained behaviour is what healing fixes)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from engine_helpers import greedy, ids_of, run_until_idle, submit, text_of

from codecomplete.engine.healing import HealedTail, HealingState, VocabIndex, find_tail
from codecomplete.engine.types import SamplingParams
from codecomplete.settings import shipped_model

# id:      0     1     2      3       4         5          6        7     8      9    10
PIECES = [None, "r", "re", " ret", " return", " returns", "return", " r", "an", "ange", " range"]
PIECES += ["\n", "    ", ".", "jo", "join", "(", None, "x", " ", "abcdefghij", " ran"]
#          11    12     13   14    15     16   17    18   19   20            21
ID = {p: i for i, p in enumerate(PIECES) if p is not None}


@pytest.fixture(scope="module")
def index() -> VocabIndex:
    return VocabIndex(PIECES)


def ids(*pieces: str) -> list[int]:
    return [ID[p] for p in pieces]


def test_prefix_index_finds_every_token_that_starts_with_a_text(index):
    assert sorted(index.starting_with(" ret")) == ids(" ret", " return", " returns")
    assert sorted(index.starting_with("ret")) == ids("return")  # no leading-space tokens
    assert sorted(index.starting_with(" r")) == ids(" ret", " return", " returns", " r", " range", " ran")
    assert index.starting_with(" retz") == [] and index.starting_with("\U0010ffff") == []
    assert len(index.starting_with("")) == len(index) == len(PIECES) - 2  # None entries left out
    assert index.piece(0) is None and index.piece(17) is None and index.piece(99) is None
    assert index.starting_with_cached(" ret") == tuple(index.starting_with(" ret"))


def test_tail_is_the_trailing_word_like_tokens_within_max_chars(index):
    assert find_tail(ids("x", "\n", "    ", "return"), index, 8) == (1, "return")
    assert find_tail(ids("x", " r", "an"), index, 8) == (2, " ran")  # stops after the word's start
    assert find_tail(ids("x", ".", "jo"), index, 8) == (1, "jo")  # a lone "." is not word-like
    assert find_tail(ids("x", " r", "an"), index, 3) == (1, "an")  # max_chars
    assert find_tail(ids("x", "abcdefghij"), index, 8) == (0, "")
    for end in ("\n", "    ", "(", " "):  # whitespace, newline, indentation, punctuation: no healing
        assert find_tail(ids("x", end), index, 8) == (0, "")
    assert find_tail(ids("return"), index, 8) == (0, "")  # the first token always stays
    assert find_tail([ID["x"], 17], index, 8) == (0, "")  # a token outside the index (not UTF-8)


def test_healing_state_follows_the_prompt_split_and_hides_the_tail(index):
    state = HealingState(index, HealedTail(tuple(ids(" r", "an")), " ran"))
    # Tokens that start with the tail, or the prompt's own next tail token; never " " or " ra".
    assert sorted(state.allowed()) == ids(" r", " range", " ran")
    assert state.advance(ID[" r"]) == 2 and state.left == "an" and state.hidden_tokens == 1
    assert sorted(state.allowed()) == ids("an", "ange")  # the last tail token: no shorter option
    assert state.advance(ID["ange"]) == 2 and not state.active and state.hidden_tokens == 1
    assert [state.visible(d) for d in (" r", "a", "nge", "(")] == ["", "", "ge", "("]
    one = HealingState(index, HealedTail((ID[" ret"],), " ret"))
    assert sorted(one.allowed()) == ids(" ret", " return", " returns")
    assert one.visible(" return(") == "urn(" and one.visible(" ret") == " ret"  # hidden once only


# --- the engine on the shipped model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def core():
    import torch
    from engine_helpers import make_core

    model = shipped_model()
    if model is None:
        pytest.skip("models/codecomplete-tiny-py is not in this checkout")
    # One thread: a 7M-parameter model gains nothing from more, and on a busy machine extra
    # OpenMP threads spin against other processes (measured 10-25x slower steps).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield make_core(model, prefix_cache_mb=0, token_healing=True)
    torch.set_num_threads(threads)


def sibling(core, **overrides):
    """Another engine over the same loaded model, with other settings."""
    from codecomplete.engine.core import EngineCore

    return EngineCore(
        core.runner.model, core.tokenizer, core.spec, replace(core.config, **overrides), core.runner.device
    )


MID_WORD = ["def main():\n    ret", "for i in ran", "import os\nos.path.jo"]


def encode(core, text: str) -> list[int]:
    return core.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_completion_after_a_partial_word_re_types_it_and_returns_only_the_continuation(core):
    tok, index = core.tokenizer, core.healer.index
    before = core.metrics()["prompts_healed_total"]
    outs = [submit(core, p, greedy(8), p) for p in MID_WORD]
    run_until_idle(core)
    for prompt, out in zip(MID_WORD, outs, strict=True):
        full, fed, gen = encode(core, prompt), out[0].prompt_token_ids, ids_of(out)
        tail = tok.decode(full[len(fed) :])
        assert fed == full[: len(fed)] and tail and prompt.endswith(tail)  # the last word, removed
        first = index.piece(gen[0])
        assert first.startswith(tail) or first == index.piece(full[len(fed)])  # constrained
        # What the client gets is exactly what follows its prompt: the tail is never repeated.
        assert tok.decode(fed + gen) == prompt + text_of(out)
    assert core.metrics()["prompts_healed_total"] - before == len(MID_WORD)


def test_a_partial_import_completes_to_the_models_whole_word_token(core):
    if " numpy" not in core.healer.index.pieces:
        pytest.skip("this tokenizer has no ' numpy' token")
    # After another import line: on the very first line of a file the shipped model (run 6) prefers
    # " number" to " numpy"; here it writes " numpy" healed and "_file" unhealed (2026-12-02).
    healed = submit(core, "h", greedy(4, stop=["\n"]), "import os\nimport num")
    run_until_idle(core)
    assert text_of(healed).startswith("py")


def test_off_switches_give_the_unhealed_prompt(core):
    prompt = MID_WORD[0]
    off_engine = sibling(core, token_healing=False)
    plain = submit(off_engine, "plain", greedy(8), prompt)
    forced = submit(off_engine, "forced", greedy(8, token_healing=True), prompt)
    run_until_idle(off_engine)
    off_request = submit(core, "off", greedy(8, token_healing=False), prompt)
    healed = submit(core, "on", greedy(8), prompt)
    run_until_idle(core)
    assert plain[0].prompt_token_ids == off_request[0].prompt_token_ids == encode(core, prompt)
    assert ids_of(off_request) == ids_of(plain)
    assert ids_of(forced) == ids_of(healed) and forced[0].prompt_token_ids == healed[0].prompt_token_ids
    assert len(healed[0].prompt_token_ids) < len(plain[0].prompt_token_ids)


def sampled(seed: int, **kw) -> SamplingParams:
    return SamplingParams(max_tokens=10, temperature=0.8, top_p=0.95, seed=seed, ignore_eos=True, **kw)


def test_healed_and_plain_requests_in_one_batch_each_match_their_solo_runs(core):
    jobs = [
        ("g-heal", greedy(10), MID_WORD[1]),
        ("g-plain", greedy(10), "x = 1\n"),
        ("s-heal", sampled(5), MID_WORD[0]),
        ("s-heal-n2", sampled(6, n=2), MID_WORD[2]),
        ("s-plain", sampled(7), "import os\n"),
    ]
    solos = []
    for rid, params, prompt in jobs:
        solos.append(submit(core, rid, params, prompt))
        run_until_idle(core)
    together = [submit(core, rid + "-b", params, prompt) for rid, params, prompt in jobs]
    core.step()
    assert core.metrics()["running"] == 6  # all in one batch, healing rows next to plain ones
    run_until_idle(core)
    for solo, mixed in zip(solos, together, strict=True):
        for j in (0, 1):
            assert ids_of(mixed, j) == ids_of(solo, j) and text_of(mixed, j) == text_of(solo, j)


def test_echo_returns_the_prompt_as_sent(core):
    prompt = MID_WORD[1]
    echo = submit(core, "echo", greedy(6, echo=True), prompt)
    plain = submit(core, "plain", greedy(6), prompt)
    scored = submit(core, "scored", greedy(2, echo=True, logprobs=1), prompt)
    run_until_idle(core)
    assert echo[0].prompt_text == prompt and text_of(echo) == text_of(plain)
    assert len(echo[0].prompt_token_ids) < len(encode(core, prompt))  # healed, echo unaffected
    # echo + logprobs scores the prompt as sent: no healing, a logprob for every prompt token.
    assert scored[0].prompt_token_ids == encode(core, prompt)
    assert len(scored[0].prompt_logprobs) == len(encode(core, prompt))


def test_logprobs_and_stop_strings_see_only_the_continuation(core):
    prompt = MID_WORD[0]  # ends in "ret", which the model re-types (hidden) as "return"
    lp = submit(core, "lp", greedy(6, logprobs=1), prompt)
    stop = submit(core, "stop", greedy(6, stop=["ret"]), prompt)
    run_until_idle(core)
    entries = [e for o in lp for c in o.choices for e in c.logprobs]
    assert "".join(e.token for e in entries) == text_of(lp)
    assert entries[0].text_offset == 0 and all(e.logprob <= 0 for e in entries)
    full = text_of(lp)
    # "ret" is in the hidden re-typed text, not in what the client sees: no stop at the start.
    assert text_of(stop) == (full[: full.index("ret")] if "ret" in full else full) and text_of(stop)


def test_fim_and_token_id_prompts_are_not_healed(core):
    prefix = MID_WORD[0]
    fim = submit(core, "fim", greedy(4), prefix, suffix="\n    return x\n")
    by_ids = submit(core, "ids", greedy(4), prompt_token_ids=encode(core, prefix))
    run_until_idle(core)
    vocab = core.tokenizer.get_vocab()
    fed = fim[0].prompt_token_ids
    start, end = fed.index(vocab["<fim_prefix>"]) + 1, fed.index(vocab["<fim_suffix>"])
    assert fed[start:end] == encode(core, prefix)
    assert by_ids[0].prompt_token_ids == encode(core, prefix)


def test_prefix_reuse_of_healed_keystrokes_gives_the_same_tokens(core):
    cached = sibling(core, prefix_cache_mb=64, prefix_min_tokens=4)
    base = "def add(a, b):\n    return a + b\n\n\nclass Stack:\n    def __init__(self):\n        self."
    keystrokes = [base + "it", base + "ite", base + "item"]
    reused = []
    for p in keystrokes:
        reused.append(submit(cached, p, greedy(6), p))
        run_until_idle(cached)
    assert cached.metrics()["prefix_cache_tokens_reused_total"] > 0
    for p, out in zip(keystrokes, reused, strict=True):
        fresh = submit(core, p, greedy(6), p)
        run_until_idle(core)
        assert ids_of(out) == ids_of(fresh) and out[0].prompt_token_ids == fresh[0].prompt_token_ids

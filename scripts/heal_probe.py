"""Token healing, measured: greedy completions cut inside a word and right after one, healing off/on.

    PYTHONPATH=src python scripts/heal_probe.py                       # the shipped model, 200 cuts
    PYTHONPATH=src python scripts/heal_probe.py --model DIR --n 500 --max-chars 16

Cuts come from the held-out files (evalsets/heldout-python, never trained on), at identifiers of
3+ characters: "mid-word" cuts inside the identifier (the user is typing it), "end-of-word" cuts
right after it. word-EM: mid-word, the completion starts with the rest of the identifier and then
the file's next character; end-of-word, its first character is the file's. line-EM: the completion
(stopped at "\\n") equals the rest of the line, stripped. docs/engine.md reports the numbers.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import time

from codecomplete.engine.config import EngineConfig
from codecomplete.engine.core import EngineCore
from codecomplete.engine.types import GenerationRequest, SamplingParams

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def cuts(path: str, n: int, seed: int) -> dict[str, list[tuple[str, str, str]]]:
    """(prompt, rest of the word, rest of the line) for each kind of cut."""
    docs = [json.loads(line)["code"] for line in gzip.open(path, "rt")]
    rng = random.Random(seed)
    out: dict[str, list[tuple[str, str, str]]] = {"mid-word": [], "end-of-word": []}
    while len(out["mid-word"]) < n:
        doc = rng.choice(docs)
        words = [m for m in WORD.finditer(doc) if m.start() > 200 and len(m.group()) >= 3]
        if not words:
            continue
        m = rng.choice(words)
        eol = doc.find("\n", m.end())
        eol = len(doc) if eol < 0 else eol
        cut = rng.randrange(m.start() + 1, m.end())
        out["mid-word"].append((doc[:cut], doc[cut : m.end()], doc[cut:eol]))
        out["end-of-word"].append((doc[: m.end()], "", doc[m.end() : eol]))
    return out


def complete(core: EngineCore, prompts: list[str], heal: bool, max_tokens: int) -> list[str]:
    texts = [""] * len(prompts)

    def sink(i):
        def put(out):
            texts[i] += "".join(c.text for c in out.choices)

        return put

    params = SamplingParams(max_tokens=max_tokens, temperature=0, stop=["\n"], token_healing=heal)
    for i, p in enumerate(prompts):
        core.submit(GenerationRequest(f"r{i}", params, prompt=p[-1500:]), sink(i))
    while core.step():
        pass
    return texts


def score(cases: list[tuple[str, str, str]], texts: list[str]) -> tuple[float, float]:
    word = line = 0
    for (_, rest_word, rest_line), text in zip(cases, texts, strict=True):
        k = len(rest_word)
        word += text[:k] == rest_word and text[k : k + 1] == rest_line[k : k + 1]
        line += text.strip() == rest_line.strip()
    return word / len(cases), line / len(cases)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/codecomplete-tiny-py")
    ap.add_argument("--data", default="evalsets/heldout-python/test.jsonl.gz")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-chars", type=int, default=8, help="--token-healing-max-chars")
    ap.add_argument("--max-tokens", type=int, default=16)
    args = ap.parse_args()
    config = EngineConfig(
        model=args.model, device="cpu", prefix_cache_mb=0, token_healing_max_chars=args.max_chars
    )
    core = EngineCore.from_config(config)
    print(f"{args.model}: {args.n} cuts per kind, greedy, max_tokens {args.max_tokens}, stop \\n")
    print("| cut | healing | word-EM | line-EM | seconds |\n| --- | --- | --- | --- | --- |")
    for kind, cases in cuts(args.data, args.n, args.seed).items():
        for heal in (False, True):
            start = time.perf_counter()
            texts = complete(core, [c[0] for c in cases], heal, args.max_tokens)
            word, line = score(cases, texts)
            took = time.perf_counter() - start
            print(f"| {kind} | {'on' if heal else 'off'} | {word:.1%} | {line:.1%} | {took:.0f} |")


if __name__ == "__main__":
    main()

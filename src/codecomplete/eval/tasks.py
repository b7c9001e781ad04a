"""The scoring tasks: perplexity, line completion, fill-in-the-middle (HumanEval is humaneval.py).

Each task takes a Backend and its inputs and returns a TaskResult: headline metrics, the
settings that produced them, and every example (prompt position, target, prediction, score) so
a number can always be traced back to what the model wrote.
"""

from __future__ import annotations

import ast
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from codecomplete.eval import metrics
from codecomplete.eval.backends import Backend, Completion, CompletionRequest, next_line
from codecomplete.eval.inputs import SourceFile, TokenSplit


@dataclass
class TaskResult:
    metrics: dict
    settings: dict = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)


def complete_all(
    backend: Backend, requests: Sequence[CompletionRequest], desc: str, chunk: int | None = None
) -> list[Completion]:
    """All completions, with a progress bar on a terminal; `chunk` requests are handed over at a
    time (default: the backend's `chunk`, 16 unless it batches more)."""
    from tqdm import tqdm

    chunk = chunk or getattr(backend, "chunk", 16)
    out: list[Completion] = []
    with tqdm(total=len(requests), desc=desc, disable=None, file=sys.stderr) as bar:
        for i in range(0, len(requests), chunk):
            part = backend.complete(requests[i : i + chunk])
            out.extend(part)
            bar.update(len(part))
    return out


# --- perplexity ---------------------------------------------------------------------------------


def run_perplexity(
    backend: Backend, data: TokenSplit, window: int, max_windows: int | None = None
) -> TaskResult:
    """Mean negative log-likelihood over the split, scored in windows of `window` tokens.

    The split is read as one stream (documents joined by their EOS). Consecutive windows overlap by
    one token, so every token but the first is scored exactly once, with at most window-1 tokens of
    context (less at the start of each window).
    """
    from tqdm import tqdm

    if window < 2:
        raise ValueError("--window must be at least 2 tokens")
    tokens = data.tokens
    stride = window - 1
    starts = list(range(0, max(1, len(tokens) - 1), stride))
    if max_windows is not None:
        starts = starts[:max_windows]
    starts = [s for s in starts if len(tokens[s : s + window]) >= 2]
    total_nll, count = 0.0, 0
    per_window = []
    with tqdm(total=len(starts), desc="perplexity", disable=None, file=sys.stderr) as bar:
        for i in range(0, len(starts), 16):
            chunk = starts[i : i + 16]
            scored = backend.prompt_logprobs_many([tokens[s : s + window].tolist() for s in chunk])
            for s, lps in zip(chunk, scored, strict=True):
                nll = -sum(lps)
                total_nll += nll
                count += len(lps)
                per_window.append({"start": s, "tokens": len(lps), "nll": nll / len(lps)})
            bar.update(len(chunk))
    nll = total_nll / count if count else float("nan")
    return TaskResult(
        metrics={
            "perplexity": metrics.perplexity(total_nll, count),
            "nll_per_token": nll,
            "bits_per_token": nll / 0.6931471805599453,
            "tokens_scored": count,
            "windows": len(per_window),
        },
        settings={
            "window": window,
            "split": data.split,
            "split_tokens": int(len(tokens)),
            "split_documents": data.num_documents,
            "eos_id": data.meta.get("eos_id"),
        },
        examples=per_window,
    )


# --- line completion ----------------------------------------------------------------------------


def _distinct(draw, n: int, total: int) -> list:
    """n different cuts (all `total` there are, if fewer), in the order `draw` first gives them.

    `draw()` returns (key, cut) from the seeded generator; a cut drawn again is skipped and the
    generator goes on, so the cuts are the ones sampling with replacement gave, repeats left out and
    made up at the end (earlier releases kept the repeats: 3 of the 200 line cuts of seed 0 on the
    held-out set were there twice, and 28 of the 600 of seed 1).
    """
    want = min(n, total)
    seen: set = set()
    cuts = []
    while len(cuts) < want:
        key, cut = draw()
        if key not in seen:
            seen.add(key)
            cuts.append(cut)
    return cuts


def sample_line_cuts(files: Sequence[SourceFile], n: int, seed: int) -> list[tuple[SourceFile, int]]:
    """n (file, line index) cuts at the start of random non-blank lines that have some code above."""
    rng = random.Random(seed)
    eligible = []
    for j, f in enumerate(files):
        lines = f.text.splitlines(keepends=True)
        seen_code = False
        idx = []
        for i, line in enumerate(lines):
            if line.strip():
                if seen_code:
                    idx.append(i)
                seen_code = True
        if idx:
            eligible.append((j, f, idx))
    if not eligible:
        raise ValueError("no file has a non-blank line below some code: nothing to cut")
    total = sum(len(idx) for _, _, idx in eligible)

    def draw():  # a cut is told apart by its file's position, not its name, which may repeat
        j, f, idx = rng.choice(eligible)
        i = rng.choice(idx)
        return (j, i), (f, i)

    return _distinct(draw, n, total)


def run_line_completion(
    backend: Backend,
    files: Sequence[SourceFile],
    n: int,
    seed: int,
    max_tokens: int = 64,
    keep_newline: bool = False,
) -> TaskResult:
    """Greedy completion of a whole line given everything above it, scored as CodeXGLUE
    line-level: exact match of whitespace-split tokens, edit similarity of the stripped strings.

    By default the prompt ends at the end of the last non-blank line above the cut and the model
    writes the line break, the indentation and the line; the prediction is the first non-blank line
    it writes after a line break. Byte-level BPE merges a line break with the indentation after it
    ("\n   " is one token), so a prompt that ends *with* the line break (`keep_newline`, the literal
    cut, stopped at "\n") ends on a token the model rarely saw followed by indentation.
    """
    cuts = sample_line_cuts(files, n, seed)
    requests, targets = [], []
    for f, i in cuts:
        lines = f.text.splitlines(keepends=True)
        above = "".join(lines[:i])
        if keep_newline:
            req = CompletionRequest(prompt=above, max_tokens=max_tokens, stop=("\n",))
        else:
            req = CompletionRequest(prompt=above.rstrip(), max_tokens=max_tokens, next_line=True)
        requests.append(req)
        targets.append(lines[i].rstrip("\r\n"))
    outs = complete_all(backend, requests, "line-completion")
    examples, em, es = [], 0, 0.0
    for (f, i), target, out in zip(cuts, targets, outs, strict=True):
        pred = out.texts[0] if keep_newline else (next_line(out.texts[0]) or "")
        exact = metrics.line_exact_match(pred, target)
        sim = metrics.edit_similarity(pred.strip(), target.strip())
        em += exact
        es += sim
        examples.append(
            {
                "file": f.name,
                "line": i + 1,
                "target": target,
                "prediction": pred,
                "exact_match": exact,
                "edit_similarity": round(sim, 2),
                **({} if keep_newline else {"new_line": next_line(out.texts[0]) is not None}),
            }
        )
    k = len(examples)
    return TaskResult(
        metrics={"exact_match": 100.0 * em / k, "edit_similarity": es / k, "examples": k},
        settings={
            "max_tokens": max_tokens,
            "seed": seed,
            "files": len(files),
            "decoding": "greedy",
            "prompt_ends": "with the line break" if keep_newline else "at the end of the line above",
        },
        examples=examples,
    )


# --- fill-in-the-middle -------------------------------------------------------------------------


def function_bodies(text: str) -> list[tuple[int, int]]:
    """(first, last) 0-based line indices of every function body (nested ones too) that starts on
    a line of its own."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0].lineno - 1
            if first >= node.lineno and node.end_lineno is not None:  # not `def f(): return 1`
                spans.append((first, node.end_lineno - 1))
    return spans


@dataclass(frozen=True)
class FimCut:
    file: str
    prefix: str
    middle: str
    suffix: str
    first_line: int


def sample_fim_cuts(files: Sequence[SourceFile], n: int, seed: int, max_lines: int = 3) -> list[FimCut]:
    """n middles of 1..max_lines whole lines from random function bodies, starting on a non-blank
    line."""
    rng = random.Random(seed)
    bodies = []
    for j, f in enumerate(files):
        if f.language not in (None, "python", "Python"):
            continue
        lines = f.text.splitlines(keepends=True)
        for first, last in function_bodies(f.text):
            starts = [i for i in range(first, min(last, len(lines) - 1) + 1) if lines[i].strip()]
            if starts:
                bodies.append((j, f, lines, starts, last))
    if not bodies:
        raise ValueError(
            "no Python function bodies found in the held-out files (the fim task parses them with ast)"
        )
    total = len(
        {
            (j, s, min(last, s + k - 1))  # nested functions' bodies share lines: one cut each
            for j, _, _, starts, last in bodies
            for s in starts
            for k in range(1, max_lines + 1)
        }
    )

    def draw():
        j, f, lines, starts, last = rng.choice(bodies)
        s = rng.choice(starts)
        e = min(last, s + rng.randint(1, max_lines) - 1)
        return (j, s, e), (f, lines, s, e)

    return [
        FimCut(f.name, "".join(lines[:s]), "".join(lines[s : e + 1]), "".join(lines[e + 1 :]), s + 1)
        for f, lines, s, e in _distinct(draw, n, total)
    ]


def run_fim(
    backend: Backend,
    files: Sequence[SourceFile],
    n: int,
    seed: int,
    max_tokens: int = 128,
    max_lines: int = 3,
) -> TaskResult:
    """Greedy infilling of a middle cut out of a function; exact match after `normalize_block`
    (trailing whitespace and surrounding blank lines ignored, indentation kept)."""
    if not backend.supports_fim():
        raise ValueError(
            "this model has no fill-in-the-middle tokens (a server would ignore `suffix`): the fim task "
            "cannot score it; with a model folder, name a template with --fim-template if it has one"
        )
    cuts = sample_fim_cuts(files, n, seed, max_lines)
    requests = [CompletionRequest(prompt=c.prefix, suffix=c.suffix, max_tokens=max_tokens) for c in cuts]
    outs = complete_all(backend, requests, "fim")
    examples, em, es = [], 0, 0.0
    for c, out in zip(cuts, outs, strict=True):
        pred, target = metrics.normalize_block(out.texts[0]), metrics.normalize_block(c.middle)
        exact = pred == target
        sim = metrics.edit_similarity(pred, target)
        em += exact
        es += sim
        examples.append(
            {
                "file": c.file,
                "line": c.first_line,
                "lines": c.middle.count("\n"),
                "target": c.middle,
                "prediction": out.texts[0],
                "exact_match": exact,
                "edit_similarity": round(sim, 2),
            }
        )
    k = len(examples)
    fim_name = backend.describe().get("fim_template")
    return TaskResult(
        metrics={"exact_match": 100.0 * em / k, "edit_similarity": es / k, "examples": k},
        settings={
            "max_tokens": max_tokens,
            "max_lines": max_lines,
            "seed": seed,
            "files": len(files),
            "decoding": "greedy",
            "fim_template": fim_name or "the server's",
        },
        examples=examples,
    )

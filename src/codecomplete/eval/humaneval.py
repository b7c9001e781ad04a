"""HumanEval pass@k: sample completions of each problem's prompt, run prompt + completion + the
problem's tests in the sandbox, estimate pass@k without bias (Chen et al. 2021)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from codecomplete.eval import metrics
from codecomplete.eval.backends import Backend, CompletionRequest
from codecomplete.eval.sandbox import SandboxConfig, SandboxResult, run_program
from codecomplete.eval.tasks import TaskResult, complete_all

# Where a top-level function body ends (the Codex paper's stop sequences).
STOP = ("\ndef", "\nclass", "\nif", "\nprint", "\n#")


def prompt_of(problem: dict, keep_newline: bool = False) -> str:
    """The prompt sent to the model: by default without its trailing line break, so the model
    writes the line break and the body's indentation as one token the way it saw them in training
    (bigcode-evaluation-harness strips HumanEval prompts for the same reason)."""
    return problem["prompt"] if keep_newline else problem["prompt"].rstrip()


def build_program(problem: dict, completion: str, keep_newline: bool = False) -> str:
    """The prompt the completion continues + completion + the problem's tests + check(entry_point).
    (The canonical solutions continue the unstripped prompt: keep_newline=True.)"""
    head = prompt_of(problem, keep_newline)
    return f"{head}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def check_programs(programs: Sequence[str], sandbox: SandboxConfig, workers: int) -> list[SandboxResult]:
    """Run every program in its own sandboxed process, `workers` at a time."""
    from tqdm import tqdm

    with ThreadPoolExecutor(max(1, workers)) as pool:
        futures = [pool.submit(run_program, p, sandbox) for p in programs]
        return [f.result() for f in tqdm(futures, desc="sandbox", disable=None, file=sys.stderr)]


def run_humaneval(
    backend: Backend,
    problems: Sequence[dict],
    samples: int,
    seed: int,
    max_tokens: int = 300,
    temperature: float | None = None,
    top_p: float = 0.95,
    sandbox: SandboxConfig | None = None,
    workers: int = 2,
    keep_newline: bool = False,
) -> TaskResult:
    if samples < 1:
        raise ValueError("--samples must be at least 1")
    sandbox = sandbox or SandboxConfig()
    # Greedy when one sample is asked for; otherwise the Codex paper's temperature for pass@10.
    if temperature is None:
        temperature = 0.0 if samples == 1 else 0.8
    if temperature == 0.0 and samples > 1:
        raise ValueError(
            "greedy decoding gives the same sample every time: use --temperature > 0 with --samples > 1"
        )
    requests = [
        CompletionRequest(
            prompt=prompt_of(p, keep_newline),
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p if temperature > 0 else 1.0,
            n=samples,
            stop=STOP,
            seed=seed + i,
        )
        for i, p in enumerate(problems)
    ]
    outs = complete_all(backend, requests, "humaneval", chunk=8)
    programs = [
        build_program(p, text, keep_newline)
        for p, out in zip(problems, outs, strict=True)
        for text in out.texts
    ]
    results = check_programs(programs, sandbox, workers)
    examples, counts, statuses = [], [], Counter()
    it = iter(results)
    for p, out in zip(problems, outs, strict=True):
        runs = [next(it) for _ in out.texts]
        c = sum(r.passed for r in runs)
        counts.append((len(runs), c))
        statuses.update(r.status for r in runs)
        examples.append(
            {
                "task_id": p["task_id"],
                "samples": len(runs),
                "correct": c,
                "completions": [
                    {"text": t, "status": r.status, "reason": r.reason, "seconds": round(r.duration_s, 3)}
                    for t, r in zip(out.texts, runs, strict=True)
                ],
            }
        )
    result_metrics: dict = {}
    for k in (1, 10, 100):
        if k <= samples:
            result_metrics[f"pass@{k}"] = 100.0 * metrics.mean_pass_at_k(counts, k)
    result_metrics.update(
        {
            "problems": len(problems),
            "samples_per_problem": samples,
            "solved_problems": sum(c > 0 for _, c in counts),
        }
    )
    result_metrics.update({f"candidates_{s}": statuses.get(s, 0) for s in ("passed", "failed", "timeout")})
    guards = results[0].guards if results else []
    return TaskResult(
        metrics=result_metrics,
        settings={
            "samples": samples,
            "temperature": temperature,
            "top_p": top_p if temperature > 0 else 1.0,
            "max_tokens": max_tokens,
            "seed": seed,
            "stop": list(STOP),
            "prompt_ends": "with the line break" if keep_newline else "stripped of trailing whitespace",
            "sandbox": {
                "timeout_s": sandbox.timeout_s,
                "memory_mb": sandbox.memory_mb,
                "fsize_mb": sandbox.fsize_mb,
                "guards": guards,
            },
        },
        examples=examples,
    )

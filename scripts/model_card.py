"""Add `codecomplete eval` results and the corpus summary to an exported model's card (README.md).

    python scripts/model_card.py --model models/codecomplete-tiny-py \
        --eval data/tiny-py/eval/*.json --corpus data/tiny-py/corpus

The export already wrote the training part of the card (commands, recipe, data splits, validation
curve); this appends one table per evaluation and the curation statistics, replacing an earlier
appendix if there is one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MARK = "<!-- codecomplete:eval -->"


def _fmt(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


_FLAGS = {"timeout_s": "--timeout"}  # config fields whose flag is not --<field-with-dashes>


def eval_command(result: dict) -> str:
    """The `codecomplete eval` command line that reproduces a result: its task, model and data, then
    every setting that differs from the default (from the JSON's own config)."""
    from dataclasses import fields

    from codecomplete.eval.runner import EvalConfig

    cfg = result.get("config") or {}
    defaults = {f.name: f.default for f in fields(EvalConfig)}
    parts = ["codecomplete eval"]
    for name, value in cfg.items():
        if name in ("api_key",) or name not in defaults or value is None:
            continue
        if name not in ("task", "model", "base_url", "data") and value == defaults[name]:
            continue
        if (
            name in ("model", "data")
            and Path(str(value)).is_absolute()
            and Path(value).is_relative_to(Path.cwd())
        ):
            value = Path(value).relative_to(Path.cwd())  # the command runs from the repository
        flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


def shown_path(data) -> str:
    """A result's data as the card shows it: relative to the repository when inside it, from the
    package on for an installed package's file (HumanEval's problems), else as recorded."""
    if not data:
        return str(data)
    path = Path(str(data).split(" (")[0])
    rest = str(data)[len(str(path)) :]
    if "site-packages" in path.parts:  # absolute, or relative to a venv inside the repository
        parts = path.parts[path.parts.index("site-packages") + 1 :]
        return f"{Path(*parts)} (installed package){rest}"
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        return str(path.relative_to(Path.cwd())) + rest
    return str(data)


def eval_section(results: list[dict]) -> list[str]:
    lines = ["## Evaluation (`codecomplete eval`)", ""]
    lines += ["| task | data | metric | value |", "|---|---|---|---|"]
    for r in results:
        ends = (r.get("settings") or {}).get("prompt_ends")
        label = f"{r['task']} (prompt ends {ends})" if ends and r["task"] == "line-completion" else r["task"]
        for name, value in r.get("metrics", {}).items():
            if isinstance(value, (int, float)):
                lines.append(f"| {label} | `{shown_path(r.get('data'))}` | {name} | {_fmt(value)} |")
    lines.append("")
    for r in results:
        settings = ", ".join(f"{k}={v}" for k, v in (r.get("settings") or {}).items())
        lines.append(f"- {r['task']}: {settings} ({r.get('duration_s', '?')} s)")
    lines += ["", "Commands (from each result's own config; `--out` left to you):", "", "```"]
    lines += [eval_command(r) for r in results]
    lines += ["```", ""]
    return lines


def corpus_section(corpus: Path) -> list[str]:
    stats_path = corpus / "stats.json"
    if not stats_path.exists():
        return []
    stats = json.loads(stats_path.read_text())
    lines = [f"## Corpus `{shown_path(corpus)}` (`codecomplete curate`)", "", "```json"]
    summary = {k: v for k, v in stats.items() if not isinstance(v, (list, dict)) or len(json.dumps(v)) < 2000}
    lines += [json.dumps(summary, indent=2), "```", ""]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--eval", nargs="*", default=[])
    p.add_argument("--corpus", nargs="*", default=[], help="curated folders the model trained on")
    p.add_argument("--note", help="a Markdown file to add (e.g. what differs from the recipe)")
    args = p.parse_args()
    card_path = Path(args.model) / "README.md"
    card = card_path.read_text().split(MARK)[0].rstrip() + "\n\n" + MARK + "\n\n"
    results = [json.loads(Path(f).read_text()) for f in args.eval]
    lines = eval_section(results) if results else []
    for corpus in args.corpus:
        lines += corpus_section(Path(corpus))
    if args.note:
        lines += [Path(args.note).read_text().rstrip(), ""]
    card_path.write_text(card + "\n".join(lines))
    print(card_path)


if __name__ == "__main__":
    main()

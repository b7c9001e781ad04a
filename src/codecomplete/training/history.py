"""A model's training history across runs: what `codecomplete export` carries from one run to the next.

A model is often trained in several runs: from scratch, then continued from its own export
(`--set model.name_or_path=<exported folder>`) with a new seed and schedule, session after session.
Each export writes `training_state.json` with a `history` list, one record per run (steps, tokens,
schedule, seed, wall clock, validation curve, the command), and a `total`. A run that starts from a
folder with such a history carries it forward, so the card of the latest export always states the
whole training the weights have had, computed rather than edited by hand.

Pure Python: no torch, no DeepSpeed; `export.py` and the model card call it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

STATE_FILE = "training_state.json"


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def read_metrics(run_dir: Path, last_step: int | None = None) -> list[dict[str, Any]]:
    """The run's `metrics.jsonl` (rank 0's log), merged by step; [] when the run folder has none."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    merged: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a crash
            continue
        step = rec.get("step")
        if isinstance(step, int) and (last_step is None or step <= last_step):
            merged.setdefault(step, {}).update(rec)
    return [merged[s] for s in sorted(merged)]


def train_seconds_from_metrics(metrics: list[dict[str, Any]]) -> float | None:
    """Time spent in optimizer steps, from the logged windows (tokens / tokens-per-second).

    Evaluation and checkpoint time is left out, so this is a lower bound of the wall clock; used
    only for runs from before the trainer recorded its own wall clock.
    """
    total, prev_tokens = 0.0, 0
    for rec in metrics:
        tok_s, seen = rec.get("train/tokens_per_s"), rec.get("train/tokens_seen")
        if not tok_s or seen is None:
            continue
        total += (seen - prev_tokens) / tok_s
        prev_tokens = seen
    return total or None


def _sample_range(recipe: dict[str, Any], state: dict[str, Any]) -> list[int] | None:
    start = (recipe.get("data") or {}).get("start_sample") or 0
    steps, batch = state.get("step"), state.get("global_batch")
    if steps is None or batch is None:
        return None
    return [start, start + steps * batch]


def run_record(state: dict[str, Any], metrics: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One run's line in the history, from its checkpoint's trainer state and its metrics log."""
    recipe = state.get("recipe") or {}
    model, optim, run = recipe.get("model") or {}, recipe.get("optim") or {}, recipe.get("run") or {}
    metrics = metrics or []
    seconds = state.get("train_seconds")
    seconds_kind = "wall clock"
    if seconds is None:
        seconds = train_seconds_from_metrics(metrics)
        seconds_kind = "optimizer steps only (estimated from metrics.jsonl)" if seconds else None
    valid = [
        {"step": v["step"], "loss": _round(v.get("valid/loss"))}
        for v in state.get("valid") or []
        if "step" in v
    ]
    curve = [[m["step"], _round(m["train/loss"])] for m in metrics if "train/loss" in m]
    return {
        "start": model.get("name_or_path") or "scratch",
        "steps": state.get("step"),
        "tokens": state.get("tokens_seen"),
        "global_batch": state.get("global_batch"),
        "seq_len": state.get("seq_len"),
        "world_size": state.get("world_size"),
        "zero_stage": state.get("zero_stage"),
        "precision": state.get("precision"),
        "lr": optim.get("lr"),
        "warmup_steps": optim.get("warmup_steps"),
        "schedule": optim.get("schedule"),
        "min_lr_ratio": optim.get("min_lr_ratio"),
        "fim_rate": (recipe.get("data") or {}).get("fim_rate"),
        "seed": run.get("seed"),
        # samples [from, to) of the seed's data order: continue with the same seed and
        # data.start_sample=<to> to see the rest of the epoch (PackedSequences)
        "samples": _sample_range(recipe, state),
        "seconds": _round(seconds, 1),
        "seconds_kind": seconds_kind,
        "final_train_loss": _round(state.get("last_loss")),
        "final_valid_loss": valid[-1]["loss"] if valid else None,
        "valid": valid,
        "train_curve": curve,
        "data": (state.get("data") or {}).get("path"),
        "command": state.get("command"),
    }


def parent_history(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The history of the model this run started from: recorded at the start of the run, or read
    from the starting folder now (runs from before the trainer recorded it). [] from scratch."""
    if "parent_history" in state:
        return list(state["parent_history"] or [])
    start = ((state.get("recipe") or {}).get("model") or {}).get("name_or_path")
    return read_history(start) if start else []


def read_history(model_dir: str | Path) -> list[dict[str, Any]]:
    """The runs recorded in an exported folder; one record rebuilt from its state when it predates
    histories; [] for a folder that codecomplete did not export (e.g. a hub model)."""
    path = Path(model_dir) / STATE_FILE
    if not path.is_file():
        return []
    state = json.loads(path.read_text())
    if "history" in state:
        return list(state["history"])
    return [run_record(state)]


def totals(history: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [r.get("seconds") for r in history]
    return {
        "runs": len(history),
        "steps": sum(r.get("steps") or 0 for r in history),
        "tokens": sum(r.get("tokens") or 0 for r in history),
        "seconds": round(sum(s for s in seconds if s), 1) if any(seconds) else None,
        "seconds_complete": all(s for s in seconds),
    }


def _duration(seconds: float | None) -> str:
    if not seconds:
        return "?"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def markdown(history: list[dict[str, Any]], curve_file: str | None = None) -> list[str]:
    """The card's "Training history" section: one row per run, the total, the curve."""
    if not history:
        return []
    tot = totals(history)
    lines = [
        "## Training history",
        "",
        f"**In all: {tot['steps']:,} optimizer steps, {tot['tokens']:,} tokens, in {tot['runs']} run(s)"
        + (f", {_duration(tot['seconds'])} of training" if tot["seconds"] else "")
        + ("" if tot["seconds_complete"] else " (some runs did not record their time)")
        + ".** Each run after the first continued from the previous run's export.",
        "",
        "| run | start | steps | tokens | batch (seq) | lr (warmup, schedule) | seed | time | final train / valid loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(history, 1):
        valid = f"{r['final_valid_loss']:.3f}" if r.get("final_valid_loss") is not None else "-"
        train = f"{r['final_train_loss']:.3f}" if r.get("final_train_loss") is not None else "-"
        seconds = _duration(r.get("seconds")) + (
            "*" if (r.get("seconds_kind") or "").startswith("optimizer") else ""
        )
        lines.append(
            f"| {i} | `{r.get('start')}` | {r.get('steps') or 0:,} | {r.get('tokens') or 0:,} | "
            f"{r.get('global_batch')} x {r.get('seq_len')} | {r.get('lr')} ({r.get('warmup_steps')}, "
            f"{r.get('schedule')}) | {r.get('seed')} | {seconds} | {train} / {valid} |"
        )
    if any((r.get("seconds_kind") or "").startswith("optimizer") for r in history):
        lines += [
            "",
            "\\* time in optimizer steps only (no evaluation or checkpoints), from the run's metrics log.",
        ]
    for i, r in enumerate(history, 1):
        if r.get("averaged_with"):
            lines += [
                "",
                f"Run {i} was exported as the mean of its final weights and those of "
                + ", ".join(f"`{a['path']}`" for a in r["averaged_with"])
                + " (weight averaging; its losses above are its own weights', before averaging).",
            ]
    last = history[-1]
    if last.get("samples") and last.get("seed") is not None:
        lines += [
            "",
            f"The last run trained on samples {last['samples'][0]:,}-{last['samples'][1]:,} of seed "
            f"{last['seed']}'s data order: to go on through that epoch without repeating them, continue "
            f"with `--set run.seed={last['seed']} --set data.start_sample={last['samples'][1]}`.",
        ]
    lines.append("")
    if curve_file:
        lines += [
            f"![training curve]({curve_file})",
            "",
            "Loss against tokens seen over all runs (grey: training loss with FIM, logged every few "
            "steps; blue: validation loss, no FIM; dashed lines: where a run continued from an export).",
            "",
        ]
    for i, r in enumerate(history, 1):
        if r.get("command"):
            lines += [f"Run {i}:", "", "```", r["command"], "```", ""]
    return lines


def svg_curve(history: list[dict[str, Any]], width: int = 640, height: int = 300) -> str | None:
    """Training and validation loss against cumulative tokens, as a small dependency-free SVG."""
    train_pts, valid_pts, bounds = [], [], []
    offset_tokens = 0
    for r in history:
        per_step = (r.get("tokens") or 0) / max(r.get("steps") or 1, 1)
        train_pts += [(offset_tokens + s * per_step, loss) for s, loss in r.get("train_curve") or [] if loss]
        valid_pts += [
            (offset_tokens + v["step"] * per_step, v["loss"]) for v in r.get("valid") or [] if v["loss"]
        ]
        offset_tokens += r.get("tokens") or 0
        bounds.append(offset_tokens)
    pts = train_pts + valid_pts
    if len(pts) < 2:
        return None
    left, right, top, bottom = 56, 12, 12, 40
    x_max = max(offset_tokens, max(p[0] for p in pts))
    y_lo, y_hi = min(p[1] for p in pts), max(p[1] for p in pts)
    y_lo, y_hi = math.floor(y_lo * 2) / 2, math.ceil(y_hi * 2) / 2
    if y_hi == y_lo:
        y_hi = y_lo + 1

    def xy(x: float, y: float) -> str:
        px = left + (width - left - right) * x / x_max
        py = top + (height - top - bottom) * (y_hi - y) / (y_hi - y_lo)
        return f"{px:.1f},{py:.1f}"

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    step = 0.5 if y_hi - y_lo <= 4 else 1.0
    y = y_lo
    while y <= y_hi + 1e-9:
        a, b = xy(0, y), xy(x_max, y)
        out.append(f'<polyline points="{a} {b}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{b.split(",")[1]}" text-anchor="end" dy="4">{y:g}</text>')
        y += step
    for i in range(5):
        x = x_max * i / 4
        px = xy(x, y_lo).split(",")[0]
        out.append(f'<text x="{px}" y="{height - bottom + 16}" text-anchor="middle">{x / 1e6:.1f}M</text>')
    out.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">tokens seen</text>'
    )
    out.append(
        f'<text x="14" y="{(top + height - bottom) / 2}" transform="rotate(-90 14 {(top + height - bottom) / 2})" text-anchor="middle">loss</text>'
    )
    for b in bounds[:-1]:
        out.append(f'<polyline points="{xy(b, y_lo)} {xy(b, y_hi)}" stroke="#999" stroke-dasharray="4 3"/>')
    for pts_, colour, w in ((train_pts, "#aaa", 1), (valid_pts, "#1f5fbf", 2)):
        if pts_:
            out.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="{w}" '
                f'points="{" ".join(xy(x, y) for x, y in pts_)}"/>'
            )
    out.append(
        f'<polyline points="{xy(0, y_hi)} {xy(0, y_lo)} {xy(x_max, y_lo)}" fill="none" stroke="#333"/>'
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"

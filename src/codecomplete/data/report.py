"""stats.json (the tasks' tallies summed), report.html (plots a person can read) and the summary.

stats.json holds counts only (no timings), so two runs of the same recipe give the same file.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

from codecomplete.data.document import write_json_atomic
from codecomplete.data.steps import CurateStep


def _merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, dict):
            _merge(into.setdefault(key, {}), value)
        elif isinstance(value, list) and value and isinstance(value[0], (int, float)) and key in into:
            if key.endswith("_bins"):
                continue
            into[key] = [a + b for a, b in zip(into[key], value, strict=True)]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            into[key] = into.get(key, 0) + value
        else:
            into.setdefault(key, value)


def merge_stats(
    stats_dir: str | Path, order: list[tuple[str, str]], recipe: dict[str, Any]
) -> dict[str, Any]:
    root = Path(stats_dir)
    steps = []
    merged: dict[tuple[str, str], dict] = {}
    for stage, step in order:
        acc: dict[str, Any] = {}
        for f in sorted((root / stage / step).glob("*.json")):
            _merge(acc, json.loads(f.read_text()))
        merged[(stage, step)] = acc
        steps.append({"stage": stage, "step": step, **{k: acc.get(k, 0) for k in ("in_docs", "in_bytes", "out_docs", "out_bytes")},
                      "dropped": acc.get("dropped", {}), "counts": acc.get("counts", {})})  # fmt: skip
    dropped: dict[str, dict[str, int]] = {}
    for s in steps:
        for reason, d in s["dropped"].items():
            slot = dropped.setdefault(reason, {"docs": 0, "bytes": 0})
            slot["docs"] += d["docs"]
            slot["bytes"] += d["bytes"]
    raw_leaks: dict[str, Any] = {}
    for acc in merged.values():
        _merge(raw_leaks, acc.get("heldout", {}))
    read = merged.get(("process", "read"), {})
    docs = merged.get(("write", "documents"), {})
    redact = merged.get(("process", "redact"), {}).get("counts", {})
    discover = merged.get(("discover", "discover"), {}).get("counts", {})
    by = docs.get("by", {})
    return {
        "recipe": recipe,
        "input": {
            "files": read.get("in_docs", 0),
            "bytes": read.get("in_bytes", 0),
            "repositories": discover.get("repositories", 0),
            "clone_failed": read.get("counts", {}).get("clone_failed", 0),
            "download_failed": read.get("counts", {}).get("download_failed", 0),
        },  # fmt: skip
        "output": {
            "documents": docs.get("out_docs", 0),
            "bytes": docs.get("out_bytes", 0),
            "repositories": len(by.get("repo", {})),
            "splits": {k: {"docs": v[0], "bytes": v[1]} for k, v in sorted(by.get("split", {}).items())},
        },  # fmt: skip
        "dropped": dict(sorted(dropped.items())),
        "heldout_leaks": _heldout_leaks(raw_leaks),
        "redactions": {k: v for k, v in sorted(redact.items())},
        "license": {k: {"docs": v[0], "bytes": v[1]} for k, v in sorted(by.get("license", {}).items())},
        "language": {k: {"docs": v[0], "bytes": v[1]} for k, v in sorted(by.get("language", {}).items())},
        "hist": docs.get("hist", {}),
        "steps": steps,
    }


def _heldout_leaks(raw: dict[str, Any]) -> dict[str, Any]:
    """held-out repo -> docs/bytes removed as copies of it, by reason and by the repo they were in."""
    out: dict[str, Any] = {}
    for heldout, reasons in sorted(raw.items()):
        slot: dict[str, Any] = {"docs": 0, "bytes": 0, "reasons": {}, "repos": {}}
        for reason, repos in sorted(reasons.items()):
            for repo, d in sorted(repos.items()):
                for key, name in (("reasons", reason), ("repos", repo)):
                    acc = slot[key].setdefault(name, {"docs": 0, "bytes": 0})
                    acc["docs"] += d["docs"]
                    acc["bytes"] += d["bytes"]
                slot["docs"] += d["docs"]
                slot["bytes"] += d["bytes"]
        out[heldout] = slot
    return out


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def summary(stats: dict[str, Any], elapsed_s: float | None = None) -> str:
    """The one-screen summary printed at the end of a run."""
    i, o = stats["input"], stats["output"]
    lines = [f"curated {stats['recipe'].get('name', '')}: {i['files']:,} files / {_mb(i['bytes'])} from "
             f"{i['repositories']:,} repositories -> {o['documents']:,} documents / {_mb(o['bytes'])} "
             f"in {o['repositories']:,} repositories"]  # fmt: skip
    if elapsed_s:
        lines[0] += f" in {elapsed_s:,.0f} s ({i['bytes'] / 1e6 / max(elapsed_s, 1e-9):.2f} MB/s)"
    lines.append(
        "  splits: "
        + ", ".join(f"{k} {v['docs']:,} docs / {_mb(v['bytes'])}" for k, v in o["splits"].items())
    )
    lines.append("  dropped (docs, bytes):")
    for reason, d in sorted(stats["dropped"].items(), key=lambda kv: -kv[1]["bytes"]):
        lines.append(f"    {reason:<22} {d['docs']:>9,} {_mb(d['bytes']):>14}")
    if stats.get("heldout_leaks"):
        lines.append("  copies of held-out code removed (docs, bytes):")
        for heldout, d in stats["heldout_leaks"].items():
            why = ", ".join(f"{k} {v['docs']:,}" for k, v in d["reasons"].items())
            where = ", ".join(
                f"{k} {v['docs']:,}" for k, v in sorted(d["repos"].items(), key=lambda kv: -kv[1]["docs"])
            )
            lines.append(f"    {heldout:<22} {d['docs']:>9,} {_mb(d['bytes']):>14}  ({why}; in {where})")
    if stats["redactions"]:
        lines.append("  redacted: " + ", ".join(f"{k} {v:,}" for k, v in stats["redactions"].items()))
    top = sorted(stats["license"].items(), key=lambda kv: -kv[1]["bytes"])[:6]
    lines.append("  licences: " + ", ".join(f"{k} {_mb(v['bytes'])}" for k, v in top))
    return "\n".join(lines)


# Plots are inline SVG written here: matplotlib (import, layout, PNG encoding) cost more CPU than
# curating 20 MB of code, and a bar chart needs none of it.
def _svg(title: str, width: int, height: int, body: list[str]) -> str:
    return (
        f'<figure><figcaption>{html.escape(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" font-family="sans-serif" font-size="11">{"".join(body)}</svg></figure>'
    )


def _barh(title: str, labels: list[str], values: list[float], xlabel: str) -> str:
    label_w, bar_w, row = 220, 560, 18
    top = max(values, default=0) or 1
    body = []
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        y = i * row
        w = bar_w * v / top
        text = f"{v:,.2f}" if isinstance(v, float) else f"{v:,}"
        body.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 5}" fill="#4c72b0"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 13}">{text} {html.escape(xlabel)}</text>'
        )
    return _svg(title, label_w + bar_w + 120, row * len(labels) + 6, body)


def _hist_plot(title: str, bins: list[int], counts: list[int], xlabel: str) -> str:
    labels = [
        f"{bins[k]}-{bins[k + 1]}" if bins[k + 1] < 10**8 else f">{bins[k]}" for k in range(len(counts))
    ]
    return _barh(f"{title} ({xlabel}, documents per bin)", labels, [int(c) for c in counts], "documents")


def write_report(stats: dict[str, Any], path: str | Path) -> None:
    imgs = []
    dropped = sorted(stats["dropped"].items(), key=lambda kv: -kv[1]["bytes"])
    if dropped:
        imgs.append(
            _barh(
                "Removed by reason (MB)",
                [k for k, _ in dropped],
                [v["bytes"] / 1e6 for k, v in dropped],
                "MB",
            )
        )
        imgs.append(
            _barh(
                "Removed by reason (files)", [k for k, _ in dropped], [v["docs"] for k, v in dropped], "files"
            )
        )
    lic = sorted(stats["license"].items(), key=lambda kv: -kv[1]["bytes"])[:25]
    if lic:
        imgs.append(
            _barh("Kept code by licence (MB)", [k for k, _ in lic], [v["bytes"] / 1e6 for k, v in lic], "MB")
        )
    lang = sorted(stats["language"].items(), key=lambda kv: -kv[1]["bytes"])
    if lang:
        imgs.append(
            _barh(
                "Kept code by language (MB)", [k for k, _ in lang], [v["bytes"] / 1e6 for k, v in lang], "MB"
            )
        )
    red = sorted(
        ((k, v) for k, v in stats["redactions"].items() if k != "documents_redacted"), key=lambda kv: -kv[1]
    )
    if red:
        imgs.append(
            _barh("Secrets and PII redacted, by kind", [k for k, _ in red], [v for _, v in red], "values")
        )
    h = stats.get("hist") or {}
    if h.get("size"):
        imgs.append(_hist_plot("File size of kept documents", h["size_bins"], h["size"], "bytes"))
        imgs.append(
            _hist_plot(
                "Mean line length of kept documents", h["line_bins"], h["mean_line_length"], "characters"
            )
        )
        imgs.append(
            _hist_plot("Longest line of kept documents", h["line_bins"], h["max_line_length"], "characters")
        )
    rows = "".join(
        f"<tr><td>{html.escape(s['stage'])}</td><td>{html.escape(s['step'])}</td><td>{s['in_docs']:,}</td>"
        f"<td>{s['out_docs']:,}</td><td>{_mb(s['in_bytes'] - s['out_bytes']) if s['in_bytes'] else ''}</td>"
        f"<td>{html.escape(', '.join(f'{k}: {v}' for k, v in {**{r: d['docs'] for r, d in s['dropped'].items()}, **s['counts']}.items()))}</td></tr>"
        for s in stats["steps"]
    )
    body = "\n".join(imgs)
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>curation report</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}
figure{{margin:1.5em 0}}figcaption{{font-weight:bold;margin-bottom:4px}}pre{{background:#f6f6f6;padding:1em}}</style></head><body>
<h1>Curation report: {html.escape(str(stats["recipe"].get("name", "")))}</h1>
<pre>{html.escape(summary(stats))}</pre>
<h2>Steps</h2><table><tr><th>stage</th><th>step</th><th>in</th><th>out</th><th>removed</th><th>details</th></tr>{rows}</table>
<h2>Plots</h2>{body}
</body></html>
"""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(path)


class FinalizeStep(CurateStep):
    """One task after everything else: stats.json, report.html, and the token meta.json."""

    name = "finalize"
    stage = "finalize"

    def __init__(self, out_dir: str, stats_dir: str, order: list[tuple[str, str]], recipe: dict[str, Any],
                 tokens: dict[str, Any] | None = None, cleanup: list[str] = ()):  # fmt: skip
        super().__init__(None)
        self.out_dir, self.order, self.recipe, self.tokens = out_dir, order, recipe, tokens
        self.stats_dir_ = stats_dir
        self.cleanup = list(cleanup)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        stats = merge_stats(self.stats_dir_, self.order, self.recipe)
        if self.tokens:
            from codecomplete.data.tokens import write_meta

            meta = write_meta(
                self.tokens["out"], self.tokens["tokenizer"], self.tokens["tasks"], self.tokens["splits"]
            )
            stats["tokens"] = {
                "dir": self.tokens["out"],
                **{s: v["num_tokens"] for s, v in meta["splits"].items()},
            }
        write_report(stats, Path(self.out_dir) / "report.html")
        # Folders of raw text no later stage reads (the intermediate shards, clones and sdists under
        # the output folder) go: only redacted text stays under a finished output folder.
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)
        write_json_atomic(Path(self.out_dir) / "stats.json", stats)  # last: marks the folder finished
        yield from ()

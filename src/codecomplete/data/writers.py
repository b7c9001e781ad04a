"""Writers: the per-task intermediate shard, the final split shards, and the optional formatter.

Every file is written through a `.tmp` name and renamed when complete (AtomicGzipJsonl): a task
killed half-way leaves nothing that looks finished, and datatrove marks the task complete only after
this step returned, so the restarted task rewrites it from the start.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline

from codecomplete.data.document import (
    AtomicGzipJsonl,
    AtomicRecordFile,
    from_record,
    read_records,
    to_record,
    utf8_len,
)
from codecomplete.data.steps import CurateStep

SIZE_BINS = [0, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 10**12]
LINE_BINS = [0, 20, 40, 60, 80, 100, 120, 160, 200, 400, 1000, 10**9]


class IntermediateWriter(CurateStep):
    """All metadata of every surviving document, for the write stage (after dedup)."""

    name = "intermediate"

    def __init__(self, folder: str, **kw):
        super().__init__(**kw)
        self.folder = folder

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        # not compressed, code not JSON-escaped: read once by the write stage, deleted at the end of the run
        with AtomicRecordFile(Path(self.folder) / f"{rank:05d}.rec") as out:
            for doc in data:
                rec = to_record(doc)
                rec.update({k: v for k, v in doc.metadata.items() if k not in rec})
                out.write(rec)
                yield doc


class IntermediateReader(CurateStep):
    name = "intermediate_reader"
    stage = "write"
    type = "📖 - READER"

    def __init__(self, folder: str, **kw):
        super().__init__(**kw)
        self.folder = folder

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for rec in read_records(Path(self.folder) / f"{rank:05d}.rec"):
            yield from_record(rec)


def heldout_entry(repo: str | None, heldout: Iterable[str]) -> str | None:
    """The `split.heldout_repos` entry that puts `repo` in the held-out split (the rule of
    `split_of`: the full name or its last component), else None."""
    held = set(heldout)
    if not repo:
        return None
    if repo in held:
        return repo
    last = repo.split("/")[-1]
    return last if last in held else None


def split_of(repo: str, heldout: set[str], valid_fraction: float, heldout_split: str = "test") -> str:
    """By repository only, so no repository is on two sides; stable across runs and machines."""
    if repo in heldout or repo.split("/")[-1] in heldout:
        return heldout_split
    h = int.from_bytes(hashlib.sha256(repo.encode()).digest()[:8], "big") / 2**64
    return "valid" if h < valid_fraction else "train"


def _hist(values: list[float], bins: list[int]) -> list[int]:
    import bisect

    counts = [0] * (len(bins) - 1)
    for v in values:
        counts[min(max(bisect.bisect_right(bins, v) - 1, 0), len(counts) - 1)] += 1
    return counts


class SplitWriter(CurateStep):
    """The curated documents: `<out>/documents/<split>/<rank>.jsonl.gz`, plus what the report plots."""

    name = "documents"
    stage = "write"
    type = "💽 - WRITER"

    def __init__(self, folder: str, heldout: list[str], valid_fraction: float, heldout_split: str, **kw):
        super().__init__(**kw)
        self.folder, self.heldout, self.valid_fraction = folder, set(heldout), valid_fraction
        self.heldout_split = heldout_split

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        writers: dict[str, AtomicGzipJsonl] = {}
        sizes, mean_lines, max_lines = [], [], []
        by: dict[str, dict] = {"license": {}, "language": {}, "split": {}, "repo": {}}
        for split in ("train", "valid", self.heldout_split):  # every split has a shard, maybe empty
            writers[split] = AtomicGzipJsonl(Path(self.folder) / split / f"{rank:05d}.jsonl.gz")
        for doc in data:
            rec = to_record(doc)
            split = split_of(rec["repo"], self.heldout, self.valid_fraction, self.heldout_split)
            writers[split].write(rec)
            n = rec["size"]
            self.tally.seen(n)
            self.tally.kept(n)
            sizes.append(n)
            lengths = list(map(len, doc.text.splitlines())) or [0]
            mean_lines.append(sum(lengths) / len(lengths))
            max_lines.append(max(lengths))
            for key, value in (("license", rec["license"] or "none"), ("language", rec["language"]),
                               ("split", split), ("repo", rec["repo"])):  # fmt: skip
                slot = by[key].setdefault(value, [0, 0])
                slot[0] += 1
                slot[1] += n
            yield doc
        for w in writers.values():
            w.close()
        hist = {
            "size_bins": SIZE_BINS,
            "size": _hist(sizes, SIZE_BINS),
            "line_bins": LINE_BINS,
            "mean_line_length": _hist(mean_lines, LINE_BINS),
            "max_line_length": _hist(max_lines, LINE_BINS),
        }
        self.save_tally(rank, {"hist": hist, "by": by})


class FormatStep(CurateStep):
    """Normalises Python with `ruff format` (black if ruff is missing), a batch of files per call.
    A file the formatter rejects (a syntax error) is kept as it was, and counted."""

    name = "format"

    def __init__(self, line_length: int = 100, batch: int = 256, **kw):
        super().__init__(**kw)
        self.line_length, self.batch = line_length, batch

    def _command(self, folder: str) -> list[str]:
        ruff = shutil.which("ruff") or str(Path(__import__("sys").executable).with_name("ruff"))
        if Path(ruff).exists():
            return [ruff, "format", "--quiet", "--no-cache", f"--line-length={self.line_length}", folder]
        return ["black", "-q", f"--line-length={self.line_length}", folder]

    def _format(self, docs: list[Document]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for i, doc in enumerate(docs):
                p = Path(tmp) / f"f{i}.py"
                p.write_text(doc.text, encoding="utf-8")
                paths.append(p)
            subprocess.run(self._command(tmp), capture_output=True, timeout=600)
            for doc, p in zip(docs, paths, strict=True):
                new = p.read_text(encoding="utf-8")
                if new != doc.text:
                    doc.text = new
                    self.tally.count("formatted")

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        batch: list[Document] = []
        for doc in data:
            batch.append(doc)
            if len(batch) >= self.batch:
                self._flush(batch)
                yield from batch
                batch = []
        if batch:
            self._flush(batch)
            yield from batch
        self.save_tally(rank)

    def _flush(self, batch: list[Document]) -> None:
        py = [d for d in batch if d.metadata.get("language") == "python"]
        for d in batch:
            self.tally.seen(utf8_len(d.text))
        if py:
            with self.track_time("batch"):
                self._format(py)
        for d in batch:
            self.tally.kept(utf8_len(d.text))

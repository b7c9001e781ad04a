"""What every curation step shares: per-task tallies saved for the report, and filters whose drops
are counted (documents and bytes) by reason and optionally written for audit.

Steps are datatrove `PipelineStep`s; a filter implements datatrove's `filter(doc) -> bool |
(False, reason)` contract. Tallies are written per task at the end of its run (atomically), and the
finalize stage sums them; datatrove's own per-task stats are kept as well (`stat_update`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from codecomplete.data.document import AtomicGzipJsonl, to_record, utf8_len, write_json_atomic
from codecomplete.data.redactor import Redactor


def doc_bytes(doc: Document) -> int:
    size = doc.metadata.get("size")
    return int(size) if size is not None and not doc.text else utf8_len(doc.text)


class Tally:
    """Counters of one step in one task: documents and bytes in/out, drops by reason, extras."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {
            "in_docs": 0,
            "in_bytes": 0,
            "out_docs": 0,
            "out_bytes": 0,
            "dropped": defaultdict(lambda: {"docs": 0, "bytes": 0}),
            "counts": defaultdict(int),
            "heldout": {},  # held-out repo -> reason -> source repo -> {"docs", "bytes"}
        }

    def seen(self, n: int) -> None:
        self.data["in_docs"] += 1
        self.data["in_bytes"] += n

    def kept(self, n: int) -> None:
        self.data["out_docs"] += 1
        self.data["out_bytes"] += n

    def dropped(self, reason: str, n: int) -> None:
        d = self.data["dropped"][reason]
        d["docs"] += 1
        d["bytes"] += n

    def heldout(self, heldout: str, reason: str, repo: str, n: int) -> None:
        """A dropped copy of held-out code: by held-out repository, reason and where it was found."""
        d = (
            self.data["heldout"]
            .setdefault(heldout, {})
            .setdefault(reason, {})
            .setdefault(repo, {"docs": 0, "bytes": 0})
        )
        d["docs"] += 1
        d["bytes"] += n

    def count(self, key: str, n: int = 1) -> None:
        self.data["counts"][key] += n

    def to_json(self) -> dict[str, Any]:
        return {**self.data, "dropped": dict(self.data["dropped"]), "counts": dict(self.data["counts"])}


class CurateStep(PipelineStep):
    """A step that saves its tally to `<stats_dir>/<stage>/<step>/<rank>.json` when a task ends."""

    type = "codecomplete"
    stage = "process"

    def __init__(self, stats_dir: str | None = None):
        super().__init__()
        self.stats_dir = stats_dir
        self.tally = Tally()

    def save_tally(self, rank: int, extra: dict[str, Any] | None = None) -> None:
        if self.stats_dir is None:
            return
        path = Path(self.stats_dir) / self.stage / self.name / f"{rank:05d}.json"
        write_json_atomic(path, {**self.tally.to_json(), **(extra or {})})


class DroppedWriter:
    """Dropped documents of one task, one `.jsonl.gz` per reason (opened on first use)."""

    def __init__(self, folder: str | None, rank: int):
        self.folder = Path(folder) if folder else None
        self.rank = rank
        self.files: dict[str, AtomicGzipJsonl] = {}
        self.redactor = None

    def write(self, doc: Document, reason: str) -> None:
        if self.folder is None:
            return
        if reason not in self.files:
            self.files[reason] = AtomicGzipJsonl(self.folder / reason / f"{self.rank:05d}.jsonl.gz")
        if self.redactor is None:
            self.redactor = Redactor()
        rec = to_record(doc)
        rec["code"] = self.redactor.redact(rec["code"])[0]  # an audit copy must not keep a secret either
        rec["filter_reason"] = reason
        self.files[reason].write(rec)

    def close(self) -> None:
        for f in self.files.values():
            f.close()


class CodeFilter(CurateStep):
    """Base of every filter: `filter(doc)` returns True to keep, or (False, reason) to drop."""

    type = "🔻 - FILTER"

    def __init__(self, stats_dir: str | None = None, dropped_dir: str | None = None):
        super().__init__(stats_dir)
        self.dropped_dir = dropped_dir

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        raise NotImplementedError

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        dropped = DroppedWriter(self.dropped_dir, rank)
        for doc in data:
            n = doc_bytes(doc)
            self.tally.seen(n)
            self.stat_update("total")
            with self.track_time():
                result = self.filter(doc)
            keep, reason = (result, None) if not isinstance(result, tuple) else result
            if keep:
                self.tally.kept(n)
                self.stat_update("forwarded")
                yield doc
            else:
                reason = reason or self.name
                self.tally.dropped(reason, n)
                self.stat_update(f"dropped_{reason}")
                doc.metadata["filter_reason"] = reason
                if doc.metadata.get("heldout_of"):
                    self.tally.heldout(doc.metadata["heldout_of"], reason, doc.metadata.get("repo") or "", n)
                dropped.write(doc, reason)
        dropped.close()
        self.save_tally(rank)

"""Readers: discovery of the work units (one task), and the reader that turns units into Documents.

Every document carries its repository's metadata: repo, path, blob sha, licence (SPDX) and its
class, stars, language. Files that cannot be code (binary, not UTF-8, too big to be kept, another
language) are still yielded, as empty documents with `read_error` / `size` set, so that the filters
count them under their reason instead of them vanishing silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline

from codecomplete.data import licenses
from codecomplete.data.config import SourceConfig
from codecomplete.data.document import git_blob_sha, language_of, write_json_atomic
from codecomplete.data.sources import assign, chunk_units, discover_source, git, local, pypi
from codecomplete.data.steps import CurateStep


class Secret:
    """Holds tokens without showing them: datatrove writes every step's attributes to
    `logs/<stage>/executor.json`, and a token must never land on disk."""

    def __init__(self, value: list[str]):
        self.value = value

    def __repr__(self) -> str:
        return f"<{len(self.value)} token(s)>"

    __str__ = __repr__


class DiscoverStep(CurateStep):
    """Lists the repositories (and their files, when local) of every source; one task."""

    name = "discover"
    stage = "discover"

    def __init__(
        self,
        sources: list[SourceConfig],
        units_path: str,
        tasks: int,
        shard_mb: float,
        tokens: list[str] | None = None,
        stats_dir: str | None = None,
    ):
        super().__init__(stats_dir)
        self.sources = sources
        self.units_path = units_path
        self.tasks = tasks
        self.shard_bytes = int(shard_mb * 1024 * 1024)
        self.tokens = Secret(tokens or [])

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from datatrove.utils.logging import logger

        work = Path(self.units_path).parent
        units: list[dict[str, Any]] = []
        for src in self.sources:
            found = discover_source(src, work, self.tokens.value, logger.info)
            logger.info(f"source {src.kind}: {len(found)} repositories")
            units += found
        _unique_names(units)
        units = chunk_units(units, self.shard_bytes)
        ranks = assign(units, self.tasks)
        for unit, r in zip(units, ranks, strict=True):
            unit["rank"] = r
        write_json_atomic(self.units_path, {"tasks": self.tasks, "units": units})
        self.tally.count("repositories", len({u["repo"]["name"] for u in units}))
        self.tally.count("units", len(units))
        self.save_tally(rank)
        yield from ()


def _unique_names(units: list[dict[str, Any]]) -> None:
    """Two folders both called `src` are two repositories: ids (`repo/path`) must not collide."""
    seen: dict[str, str] = {}
    for unit in units:
        where = unit.get("root") or unit.get("url") or unit.get("sdist", {}).get("url")
        name = base = unit["repo"]["name"]
        k = 1
        while name in seen and seen[name] != where:
            k += 1
            name = f"{base}-{k}"
        seen[name] = where
        unit["repo"]["name"] = name


def read_file(path: Path, max_bytes: int) -> tuple[str, int, str | None, bytes | None]:
    """(text, size, error, raw) of a file; bigger than `max_bytes` is not read at all."""
    try:
        size = path.stat().st_size
    except OSError:
        return "", 0, "unreadable", None
    if size > max_bytes:
        return "", size, None, None
    try:
        raw = path.read_bytes()
    except OSError:
        return "", size, "unreadable", None
    if b"\0" in raw[:8192]:
        return "", size, "binary", raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "", size, "non_utf8", raw
    return text.removeprefix("\ufeff"), size, None, raw


class RepoReader(CurateStep):
    """Yields one Document per file of the units assigned to this task, in a fixed order."""

    name = "read"
    type = "📖 - READER"

    def __init__(
        self,
        units_path: str,
        clone_dir: str,
        languages: list[str],
        max_bytes: int,
        clone_timeout_s: float = 300.0,
        progress: bool = True,
        stats_dir: str | None = None,
    ):
        super().__init__(stats_dir)
        self.units_path = units_path
        self.clone_dir = clone_dir
        self.languages = set(languages)
        self.max_bytes = max_bytes
        self.clone_timeout_s = clone_timeout_s
        self.progress = progress

    def _resolve(
        self, unit: dict[str, Any]
    ) -> tuple[Path, list[tuple[str, str | None]], dict[str, Any]] | None:
        repo = dict(unit["repo"])
        if unit.get("files") is not None:
            return Path(unit["root"]), [tuple(f) for f in unit["files"]], repo
        if unit.get("sdist") is not None:
            try:
                root = pypi.fetch(unit, Path(self.clone_dir) / "pypi", self.clone_timeout_s)
            except pypi.DownloadError as e:
                from datatrove.utils.logging import logger

                logger.warning(str(e))
                self.tally.count("download_failed")
                return None
            repo["license"] = pypi.license_of(root)
            return root, pypi.files_of(root), repo
        try:
            root = git.clone(unit["url"], Path(self.clone_dir), unit.get("ref"), self.clone_timeout_s)
        except git.CloneError as e:
            from datatrove.utils.logging import logger

            logger.warning(str(e))
            self.tally.count("clone_failed")
            return None
        if not repo.get("license") or repo["license"] == "NOASSERTION":
            repo["license"] = git.license_of(root) or repo.get("license")
        return root, local.git_files(root), repo

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from tqdm import tqdm

        plan = json.loads(Path(self.units_path).read_text())
        if plan["tasks"] != world_size:
            raise ValueError(f"units were planned for {plan['tasks']} tasks, this run has {world_size}")
        mine = [u for u in plan["units"] if u["rank"] == rank]
        total = sum(sum(u.get("sizes", [])) for u in mine)
        bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=f"task {rank}", disable=not self.progress,
                   leave=False)  # fmt: skip
        for unit in mine:
            resolved = self._resolve(unit)
            if resolved is None:
                continue
            root, files, repo = resolved
            spdx = licenses.normalize_spdx(repo.get("license")) if repo.get("license") else None
            lic_class = licenses.classify(spdx)
            for rel, sha in files:
                language = language_of(rel)
                wanted = language is not None and (not self.languages or language in self.languages)
                if wanted:
                    text, size, error, raw = read_file(root / rel, self.max_bytes)
                else:
                    text, size, error, raw = "", _size(root / rel), None, None
                bar.update(size)
                self.tally.seen(size)
                self.stat_update("files")
                self.stat_update("bytes", value=size, unit="file")
                meta = {
                    "repo": repo["name"],
                    "path": rel,
                    "sha": sha or (git_blob_sha(raw) if raw is not None else None),
                    "license": spdx,
                    "license_class": lic_class,
                    "license_rank": licenses.permissive_rank(spdx),
                    "stars": int(repo.get("stars") or 0),
                    "language": language,
                    "size": size,
                }
                if error:
                    meta["read_error"] = error
                self.tally.kept(size)
                yield Document(text=text, id=f"{repo['name']}/{rel}", metadata=meta)
        bar.close()
        self.save_tally(rank)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0

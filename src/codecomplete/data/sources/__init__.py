"""Sources turn a recipe's `sources:` into work units: a repository and (when known) its files.

Discovery runs once (one task) and writes the units to a file; the processing tasks then each read
the units assigned to them (balanced by bytes). Remote repositories are cloned by the task that
reads them, so clones run in parallel.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codecomplete.data import licenses
from codecomplete.data.config import SourceConfig
from codecomplete.data.sources import git, local, pypi, python_env

Unit = dict[str, Any]


def _local_unit(path: str) -> Unit:
    root = Path(path).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"source folder {root} does not exist")
    return {
        "repo": {"name": root.name, "license": licenses.from_repo_dir(root), "stars": 0},
        "root": str(root),
        "files": local.list_files(root),
    }


def discover_source(
    cfg: SourceConfig, work_dir: Path, tokens: list[str], log: Callable[[str], None]
) -> list[Unit]:
    if cfg.kind == "local":
        return [_local_unit(p) for p in cfg.paths]
    if cfg.kind == "python-env":
        units = [python_env.stdlib_unit()] if cfg.stdlib and "python/stdlib" not in cfg.exclude else []
        return units + python_env.distribution_units(cfg.site_packages, cfg.exclude)
    if cfg.kind == "git":
        units = []
        for spec in cfg.repos:
            url, ref = git.split_ref(spec)
            if not git.is_remote(url) and ref is None and Path(url).is_dir():
                units.append(_local_unit(url))
            else:
                units.append(
                    {
                        "repo": {"name": git.repo_name(url), "license": None, "stars": 0},
                        "url": url,
                        "ref": ref,
                    }
                )
        return units
    if cfg.kind == "pypi":
        specs = list(cfg.packages)
        if cfg.packages_file:
            specs += pypi.read_package_list(cfg.packages_file, cfg.top)
        excluded = {pypi.canonical(e.removeprefix("pypi/")) for e in cfg.exclude}
        specs = [s for s in specs if pypi.canonical(pypi.parse_spec(s)[0]) not in excluded]
        work_dir.mkdir(parents=True, exist_ok=True)
        return pypi.discover(specs, cfg.index_url, cfg.find_links, work_dir / "pypi-resolved.jsonl", log,
                             pure_python=cfg.pure_python)  # fmt: skip
    if cfg.kind == "github":
        from codecomplete.data.sources.github import GitHubSearch

        search = GitHubSearch(cfg, tokens, work_dir / "github-cursor.json", log=log)
        units = []
        for repo in search.crawl():
            meta = {k: repo[k] for k in ("name", "license", "stars", "language")}
            units.append({"repo": meta, "url": repo["url"], "ref": None, "size_kb": repo["size_kb"]})
        log(f"github: {len(units)} repositories in {search.requests} requests")
        return units
    raise ValueError(cfg.kind)


def unit_bytes(unit: Unit) -> int:
    if unit.get("files") is None:
        return int(unit.get("size_kb") or 1024) * 1024
    return sum(unit.get("sizes", [0])) or len(unit["files"]) * 4096


def chunk_units(units: list[Unit], shard_bytes: int) -> list[Unit]:
    """Cut units with many files into pieces of about `shard_bytes`, so big repos spread over tasks."""
    out = []
    for unit in units:
        files = unit.get("files")
        if files is None:
            out.append(unit)
            continue
        root = Path(unit["root"])
        chunk: list = []
        size = 0
        sizes: list[int] = []
        for rel, sha in files:
            try:
                n = os.path.getsize(root / rel)
            except OSError:
                n = 0
            chunk.append((rel, sha))
            sizes.append(n)
            size += n
            if size >= shard_bytes:
                out.append({**unit, "files": chunk, "sizes": sizes})
                chunk, sizes, size = [], [], 0
        if chunk or not files:
            out.append({**unit, "files": chunk, "sizes": sizes})
    return out


def assign(units: list[Unit], tasks: int) -> list[int]:
    """Rank of each unit: largest first onto the least-loaded task (deterministic)."""
    load = [0] * tasks
    ranks = [0] * len(units)
    order = sorted(range(len(units)), key=lambda i: (-unit_bytes(units[i]), i))
    for i in order:
        r = min(range(tasks), key=lambda t: (load[t], t))
        ranks[i] = r
        load[r] += unit_bytes(units[i])
    return ranks

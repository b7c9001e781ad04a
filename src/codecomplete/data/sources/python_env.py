"""The Python code on this machine: the standard library and the distributions of a site-packages.

The standard library is one repository, `python/stdlib` (PSF-2.0). Each installed distribution is a
repository `pypi/<name>`, its files those its RECORD lists, its licence read from its metadata
(License-Expression, License, trove classifiers, then the licence files in its dist-info).
"""

from __future__ import annotations

import importlib.metadata
import re
import sysconfig
from pathlib import Path
from typing import Any

from codecomplete.data import licenses
from codecomplete.data.sources.local import SKIP_DIRS, walk_files


def dist_repo_name(name: str) -> str:
    return "pypi/" + re.sub(r"[-_.]+", "-", name).lower()


def stdlib_unit() -> dict[str, Any]:
    root = Path(sysconfig.get_paths()["stdlib"]).resolve()
    files = [
        (rel, sha)
        for rel, sha in walk_files(root)
        if rel.endswith(".py") and not rel.startswith("site-packages/")
    ]
    return {
        "repo": {"name": "python/stdlib", "license": "PSF-2.0", "stars": 0},
        "root": str(root),
        "files": files,
    }


def _license_texts(dist: importlib.metadata.Distribution) -> list[str]:
    texts = []
    for f in dist.files or []:
        name = f.name.upper()
        if name.startswith(("LICENSE", "LICENCE", "COPYING")):
            try:
                texts.append(Path(dist.locate_file(f)).read_text(errors="replace"))
            except OSError:
                pass
    return texts


def distribution_units(site_packages: list[str], exclude: list[str]) -> list[dict[str, Any]]:
    paths = site_packages or [sysconfig.get_paths()["purelib"]]
    excluded = {dist_repo_name(e.removeprefix("pypi/")) for e in exclude}
    units: dict[str, dict[str, Any]] = {}
    for sp in paths:
        sp_root = Path(sp).resolve()
        for dist in importlib.metadata.distributions(path=[str(sp_root)]):
            name = dist.metadata.get("Name")
            if not name:
                continue
            repo = dist_repo_name(name)
            if repo in excluded or repo in units:
                continue
            files = []
            for f in dist.files or []:
                if f.suffix != ".py":
                    continue
                full = Path(dist.locate_file(f)).resolve()
                try:
                    rel = full.relative_to(sp_root).as_posix()
                except ValueError:  # scripts installed outside site-packages
                    continue
                if any(part in SKIP_DIRS for part in rel.split("/")[:-1]) or not full.is_file():
                    continue
                files.append((rel, None))
            if not files:
                continue
            spdx = licenses.from_python_metadata(dist.metadata, _license_texts(dist))
            units[repo] = {
                "repo": {"name": repo, "license": spdx, "stars": 0, "version": dist.version},
                "root": str(sp_root),
                "files": sorted(set(files)),
            }
    return [units[k] for k in sorted(units)]

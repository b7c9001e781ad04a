"""PyPI packages by name: each package's source distribution is one repository `pypi/<name>`.

Discovery (one task) resolves every requested package to one release and its sdist with pip's own
index machinery (`PackageFinder`: the recipe's index URL and `--find-links` folders, yanked releases
skipped, hashes from the index); the reading tasks download and unpack the sdists in parallel.
Both steps resume: each resolved package is appended to `<work>/pypi-resolved.jsonl` as it is
found, and an sdist is written under a `.partial` name (checked against the index's sha256) and
renamed when complete, then unpacked the same way.

The licence comes from the sdist's `PKG-INFO` (License-Expression, License, trove classifiers) and
then its top-level LICENSE/COPYING files, as for installed distributions.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import re
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from codecomplete.data import licenses
from codecomplete.data.sources.local import walk_files

_SPEC = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^\s#]+))?\s*(?:#.*)?$")
SDIST_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


class DownloadError(RuntimeError):
    pass


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_spec(spec: str) -> tuple[str, str | None]:
    """`name` or `name==version` -> (name, version or None)."""
    m = _SPEC.match(spec)
    if not m:
        raise ValueError(f"pypi: {spec!r} is not `name` or `name==version`")
    return m.group(1), m.group(2)


def read_package_list(path: str | Path, top: int | None) -> list[str]:
    """Package specs from a file: one per line, or a TSV whose first column is the name and which
    has a `rank...` column (then sorted by rank, unranked rows left out); `#` comments ignored."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if lines and "\t" in lines[0]:
        header = lines[0].split("\t")
        col = next((i for i, h in enumerate(header) if h.startswith("rank")), None)
        rows = [ln.split("\t") for ln in lines[1:]]
        if col is not None:
            ranked = [(int(r[col]), r[0]) for r in rows if len(r) > col and r[col].strip().isdigit()]
            names = [name for _, name in sorted(ranked)]
        else:
            names = [r[0] for r in rows]
    else:
        names = [ln.split("#")[0].strip() for ln in lines]
    return names[:top] if top else names


def _finder(index_url: str | None, find_links: list[str]):
    # pip's internal API (pip >= 24): the index client pip itself uses, so index URLs, find-links
    # folders, yanked releases and PEP 691/503 pages behave exactly as for `pip download`.
    from pip._internal.index.collector import LinkCollector
    from pip._internal.index.package_finder import PackageFinder
    from pip._internal.models.search_scope import SearchScope
    from pip._internal.models.selection_prefs import SelectionPreferences
    from pip._internal.network.session import PipSession

    session = PipSession(retries=3)
    scope = SearchScope.create(find_links=list(find_links), index_urls=[index_url] if index_url else [],
                               no_index=index_url is None)  # fmt: skip
    prefs = SelectionPreferences(allow_yanked=False, ignore_requires_python=True)
    return session, PackageFinder.create(LinkCollector(session=session, search_scope=scope), prefs)


def _resolve_one(finder, spec: str, allow_pre: bool) -> dict[str, Any]:
    name, version = parse_spec(spec)
    candidates = finder.find_all_candidates(name)
    versions: dict[str, dict[str, Any]] = {}
    for c in candidates:
        v = versions.setdefault(str(c.version), {"version": c.version, "sdist": None, "pure": False})
        filename = c.link.filename
        if c.link.is_wheel:
            v["pure"] = v["pure"] or filename.endswith("-none-any.whl")
        elif filename.endswith(SDIST_SUFFIXES) and v["sdist"] is None:
            v["sdist"] = c.link
    with_sdist = [v for v in versions.values() if v["sdist"] is not None]
    if version is not None:
        with_sdist = [v for v in with_sdist if str(v["version"]) == version or v["version"].public == version]
    elif not allow_pre:
        with_sdist = [v for v in with_sdist if not v["version"].is_prerelease] or with_sdist
    if not with_sdist:
        why = f"no sdist of version {version}" if version else "no sdist"
        return {"spec": spec, "name": canonical(name), "error": why if candidates else "not found"}
    best = max(with_sdist, key=lambda v: v["version"])
    link = best["sdist"]
    return {
        "spec": spec,
        "name": canonical(name),
        "version": str(best["version"]),
        "url": link.url_without_fragment,
        "filename": link.filename,
        "sha256": link.hash if link.hash_name == "sha256" else None,
        "pure": best["pure"],
    }


def discover(
    packages: list[str],
    index_url: str | None,
    find_links: list[str],
    cursor: Path,
    log: Callable[[str], None],
    pure_python: bool = False,
    allow_pre: bool = False,
    threads: int = 8,
) -> list[dict[str, Any]]:
    """One unit per package (no files yet: the reading task downloads the sdist)."""
    done: dict[str, dict[str, Any]] = {}
    if cursor.exists():
        for line in cursor.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            done[rec["spec"]] = rec
    todo = [s for s in dict.fromkeys(packages) if s not in done]
    if todo:
        session, finder = _finder(index_url, find_links)
        with ThreadPoolExecutor(threads) as pool, cursor.open("a") as f:
            for rec in pool.map(lambda s: _resolve_one(finder, s, allow_pre), todo):
                done[rec["spec"]] = rec
                f.write(json.dumps(rec, sort_keys=True) + "\n")
                f.flush()
        session.close()
    units, seen = [], set()
    skipped = {"not_found": 0, "no_sdist": 0, "not_pure_python": 0}
    for spec in packages:
        rec = done[spec]
        if rec["name"] in seen:
            continue
        seen.add(rec["name"])
        if "error" in rec:
            skipped["not_found" if rec["error"] == "not found" else "no_sdist"] += 1
            log(f"pypi: {spec}: {rec['error']}")
            continue
        if pure_python and not rec["pure"]:
            skipped["not_pure_python"] += 1
            continue
        units.append({
            "repo": {"name": f"pypi/{rec['name']}", "license": None, "stars": 0, "version": rec["version"]},
            "sdist": {k: rec[k] for k in ("url", "filename", "sha256")},
            "size_kb": 1024,
        })  # fmt: skip
    log(f"pypi: {len(units)} packages; skipped {skipped}")
    return units


def _download(session, sdist: dict[str, Any], dest_dir: Path, timeout_s: float) -> Path:
    dest = dest_dir / sdist["filename"]
    if dest.is_file():
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    digest = hashlib.sha256()
    try:
        with session.get(sdist["url"], stream=True, timeout=timeout_s) as resp:
            resp.raise_for_status()
            with tmp.open("wb") as f:
                for chunk in resp.iter_content(1 << 16):
                    digest.update(chunk)
                    f.write(chunk)
    except Exception as e:  # network errors of every kind: the package is skipped and counted
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"download of {sdist['url']} failed: {e}") from e
    if sdist.get("sha256") and digest.hexdigest() != sdist["sha256"]:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"{sdist['filename']}: sha256 {digest.hexdigest()} != index's {sdist['sha256']}")
    tmp.rename(dest)
    return dest


def _unpack(archive: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    target = (tmp / info.filename).resolve()
                    if not target.is_relative_to(tmp.resolve()):  # a path escaping the folder
                        continue
                    z.extract(info, tmp)
        else:
            with tarfile.open(archive) as t:
                t.extractall(tmp, filter="data")  # no links out, no device files, no absolute paths
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"cannot unpack {archive.name}: {e}") from e
    # an sdist holds one top-level folder `<name>-<version>/`: the repository is its content
    entries = list(tmp.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        staged = tmp.with_name(tmp.name + ".inner")
        shutil.rmtree(staged, ignore_errors=True)
        inner.rename(staged)
        tmp.rmdir()
        staged.rename(dest)
    else:
        tmp.rename(dest)


def fetch(unit: dict[str, Any], cache_dir: Path, timeout_s: float, session=None) -> Path:
    """Download and unpack a unit's sdist (reused when a previous run finished it); its folder."""
    repo = unit["repo"]
    dest = cache_dir / "src" / f"{repo['name'].removeprefix('pypi/')}-{repo['version']}"
    if dest.is_dir():
        return dest
    own = session is None
    if own:
        from pip._internal.network.session import PipSession

        session = PipSession(retries=3)
    try:
        archive = _download(session, unit["sdist"], cache_dir / "sdists", timeout_s)
    finally:
        if own:
            session.close()
    _unpack(archive, dest)
    return dest


def license_of(root: Path) -> str | None:
    """SPDX id from PKG-INFO, then the top-level licence files."""
    texts = []
    for p in sorted(root.iterdir()):
        if p.is_file() and p.name.upper().startswith(("LICENSE", "LICENCE", "COPYING")):
            texts.append(p.read_text(errors="replace"))
    info = root / "PKG-INFO"
    if info.is_file():
        meta = email.parser.HeaderParser().parsestr(info.read_text(errors="replace"))
        spdx = licenses.from_python_metadata(meta, texts)
        if spdx:
            return spdx
    for text in texts:
        spdx = licenses.from_text(text)
        if spdx:
            return spdx
    return None


def files_of(root: Path) -> list[tuple[str, str | None]]:
    """The sdist's files, vendored folders and build output skipped (as for local folders)."""
    return [f for f in walk_files(root) if not f[0].endswith(".partial")]

"""Git repositories by URL or path: a shallow clone with a timeout, its licence file read."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

from codecomplete.data import licenses


class CloneError(RuntimeError):
    pass


def repo_name(url: str) -> str:
    """`owner/name` for a GitHub-like URL, the folder name for a path."""
    url = url.rstrip("/")
    if url.endswith(".git"):
        url = url[:-4]
    m = re.search(r"[:/]([^/:]+)/([^/:]+)$", url)
    if "://" in url or url.startswith("git@"):
        if m:
            return f"{m.group(1)}/{m.group(2)}"
    return Path(url).name


def split_ref(spec: str) -> tuple[str, str | None]:
    """`url@ref` -> (url, ref); an `@` in `git@host:` is not a ref."""
    if "@" in spec.rsplit("/", 1)[-1]:
        url, ref = spec.rsplit("@", 1)
        return url, ref
    return spec, None


def is_remote(url: str) -> bool:
    return "://" in url or url.startswith("git@")


def clone(url: str, dest_root: Path, ref: str | None = None, timeout_s: float = 300.0) -> Path:
    """Shallow-clone `url` (at `ref`) under `dest_root`; reuses a finished clone from a previous run.

    The clone goes to a temporary folder renamed when complete, so a killed run never leaves a
    half clone that looks finished.
    """
    key = hashlib.sha1(f"{url}@{ref}".encode()).hexdigest()[:12]
    dest = dest_root / f"{repo_name(url).replace('/', '__')}-{key}"
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    dest_root.mkdir(parents=True, exist_ok=True)
    cmd = ["git", "clone", "--quiet", "--depth", "1", "--single-branch", "--no-tags"]
    if ref:
        cmd += ["--branch", ref]
    if not is_remote(url) and Path(url).exists():
        url = Path(url).resolve().as_uri()  # file:// so that --depth is honoured
    try:
        subprocess.run(
            cmd + [url, str(tmp)],
            check=True,
            capture_output=True,
            timeout=timeout_s,
            env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"},
        )
    except subprocess.TimeoutExpired as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CloneError(f"clone of {url} timed out after {timeout_s:.0f}s") from e
    except subprocess.CalledProcessError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CloneError(f"clone of {url} failed: {e.stderr.decode(errors='replace').strip()[:300]}") from e
    tmp.rename(dest)
    return dest


def license_of(root: Path) -> str | None:
    return licenses.from_repo_dir(root)

"""Local folders: every file git would see, minus vendored code and virtual environments.

Inside a git work tree, `git ls-files --cached --others --exclude-standard` gives git's own answer
(nested `.gitignore`s, `.git/info/exclude`, the global excludes). Elsewhere the folder is walked and
its `.gitignore` files are applied with the subset of gitignore syntax projects actually use.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

# Folders that hold someone else's code or build output; never curated as this repo's code.
SKIP_DIRS = {
    ".git", ".hg", ".svn", "__pycache__", "node_modules", "vendor", "vendored", "_vendor", "third_party",
    "thirdparty", "site-packages", "dist-packages", ".venv", "venv", ".tox", ".nox", ".eggs", "build",
    "dist", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints", "htmlcov",
}  # fmt: skip


def is_skipped_dir(path: Path) -> bool:
    name = path.name
    if name in SKIP_DIRS or name.endswith(".egg-info") or name.endswith(".dist-info"):
        return True
    return (path / "pyvenv.cfg").exists() or (path / "conda-meta").is_dir()


def _skipped_parts(rel: str) -> bool:
    parts = rel.split("/")[:-1]
    return any(p in SKIP_DIRS or p.endswith(".egg-info") for p in parts)


def _gitignore_regex(pattern: str) -> tuple[re.Pattern, bool, bool] | None:
    """(regex on the path relative to the .gitignore's folder, negated, directory-only)."""
    pattern = pattern.rstrip("\n")
    if not pattern.strip() or pattern.startswith("#"):
        return None
    pattern = pattern.rstrip() if not pattern.endswith("\\ ") else pattern
    negated = pattern.startswith("!")
    if negated:
        pattern = pattern[1:]
    if pattern.startswith("\\"):
        pattern = pattern[1:]
    dir_only = pattern.endswith("/")
    pattern = pattern.rstrip("/")
    anchored = "/" in pattern
    pattern = pattern.lstrip("/")
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("/.*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append("[" + pattern[i + 1 : j].replace("!", "^", 1) + "]")
                i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    body = "".join(out)
    regex = ("^" if anchored else "^(?:.*/)?") + body + "$"
    return re.compile(regex), negated, dir_only


class GitIgnore:
    """The `.gitignore` rules met on the way down a folder walk."""

    def __init__(self) -> None:
        self.rules: list[tuple[str, re.Pattern, bool, bool]] = []  # (base dir, regex, negated, dir_only)

    def child(self, rel_dir: str, gitignore: Path) -> GitIgnore:
        new = GitIgnore()
        new.rules = list(self.rules)
        if gitignore.is_file():
            for line in gitignore.read_text(errors="replace").splitlines():
                rule = _gitignore_regex(line)
                if rule:
                    new.rules.append((rel_dir, *rule))
        return new

    def ignored(self, rel: str, is_dir: bool) -> bool:
        result = False
        for base, regex, negated, dir_only in self.rules:
            if dir_only and not is_dir:
                continue
            if base:
                if not rel.startswith(base + "/"):
                    continue
                sub = rel[len(base) + 1 :]
            else:
                sub = rel
            if regex.match(sub):
                result = not negated
        return result


def _git_toplevel(root: Path) -> Path | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 else None


def git_files(root: Path) -> list[tuple[str, str | None]]:
    """(relative path, blob sha or None) of the files git sees under `root`, sorted."""
    cmd = ["git", "-C", str(root), "-c", "core.quotepath=off"]
    tracked = subprocess.run(
        cmd + ["ls-files", "--cached", "--stage", "-z", "--", "."],
        capture_output=True,
        check=True,
        timeout=600,
    ).stdout
    files: dict[str, str | None] = {}
    for entry in tracked.split(b"\0"):
        if not entry:
            continue
        info, path = entry.split(b"\t", 1)
        mode, sha, _stage = info.split(b" ")
        if mode.startswith(b"16"):  # a submodule
            continue
        files[path.decode("utf-8", "surrogateescape")] = sha.decode()
    others = subprocess.run(
        cmd + ["ls-files", "--others", "--exclude-standard", "-z", "--", "."],
        capture_output=True,
        check=True,
        timeout=600,
    ).stdout
    for path in others.split(b"\0"):
        if path:
            files.setdefault(path.decode("utf-8", "surrogateescape"), None)
    return sorted((p, s) for p, s in files.items() if not _skipped_parts(p) and (root / p).is_file())


def walk_files(root: Path) -> list[tuple[str, str | None]]:
    """Files under a folder that is not in a git work tree, `.gitignore`s applied, sorted."""
    out: list[tuple[str, str | None]] = []
    stack: list[tuple[Path, str, GitIgnore]] = [(root, "", GitIgnore().child("", root / ".gitignore"))]
    while stack:
        folder, rel_dir, rules = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                if is_skipped_dir(Path(entry.path)) or rules.ignored(rel, True):
                    continue
                stack.append((Path(entry.path), rel, rules.child(rel, Path(entry.path) / ".gitignore")))
            elif entry.is_file(follow_symlinks=False) and not rules.ignored(rel, False):
                out.append((rel, None))
    return sorted(out)


def list_files(root: str | Path) -> list[tuple[str, str | None]]:
    root = Path(root).resolve()
    if _git_toplevel(root) is not None:
        return git_files(root)
    return walk_files(root)

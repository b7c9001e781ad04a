"""Held-out leaks: copies of held-out code that live in OTHER repositories.

Dedup keeps the held-out copy of a near-duplicate group, but a copy that was modified (a vendored
package patched by its vendor, a renamed fork) is often not a near-duplicate file by file: typer's
`typer/_click/core.py` shares 17% of its shingles with click's `core.py`, and two thirds of the
files of `httpx2`, a fork of httpx, are under dedup's 0.7 against their httpx original. Those files would be trained on, and the
evaluation on the held-out package would measure memory. This check decides, over every task's
documents at once (the dedup stage), which documents of non-held-out repositories are such copies:

- `heldout_renamed`: the whole repository, when its name is a held-out name (`click` from another
  source than `pypi/click`), the name plus a version number (`httpx2`, `click-8`; after a name that
  ends in a digit a separator is required, so `jinja23` is not `jinja2`), or the name plus a fork word
  (`packaging-legacy`, `starlette_fork`, FORK_WORDS), AND at least one of its files resembles a file
  of that held-out repository. The evidence keeps `boto3` (if `boto` were held out) or `jinja`/`jinja2`
  apart: successors that share a name but no code.
- `heldout_fork`: the whole repository, whatever its name, when at least `fork_overlap` of its files
  (and `fork_min_files` of them) resemble files of one held-out repository.
- `heldout_vendored`: a folder named after a held-out package (leading underscores, case, `-`/`.`
  ignored: `_click`, `Jinja2`) inside another repository: always when it sits below a vendoring
  folder (VENDOR_DIRS: `_vendor/packaging/`, `extern/packaging/`, `vendor/click/`; also a single-file
  module there, `_vendor/six.py`), elsewhere (`typer/_click/`, `foo/click/`) when at least one of
  its files resembles a file of that held-out repository: `ddtrace/contrib/jinja2/`, an integration
  named after jinja2, is not a copy of it.

"Resembles" = same normalised hash, or a MinHash Jaccard estimate of at least `similarity` (0.5:
lower than dedup's 0.7, because a modified copy still teaches the held-out code) with one held-out
file, found with a MinHash LSH index of the held-out files only (datasketch's band split, in numpy:
`dedup.lsh_query`).

- `heldout_copied`: a folder of any name in which at least `fork_overlap` of the files (and
  `fork_min_files`) resemble files of one held-out repository (`mylib/_http/` holding httpx under
  another module name): the fork rule applied folder by folder, path and names ignored.

Not caught: copies of fewer than `fork_min_files` files or under half of every folder they are in
(dedup still removes each file at >= 0.7), files rewritten below `similarity`, and import names that differ from the repository's name unless given
as `split.heldout_aliases` (`pypi/pyyaml: [yaml]`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline

from codecomplete.data.dedup import lsh_query
from codecomplete.data.document import write_json_atomic
from codecomplete.data.steps import CodeFilter, CurateStep
from codecomplete.data.writers import heldout_entry

# Folders whose content is someone else's package, compared after `package_key` (`_vendor` -> vendor).
VENDOR_DIRS = frozenset({"vendor", "vendored", "extern", "externals", "third_party", "thirdparty"})
FORK_WORDS = frozenset({"fork", "forked", "ng", "next", "legacy", "patched", "vendored", "copy", "mirror"})


def package_key(name: str) -> str:
    """How a package name compares: lower case, `-`/`.` as `_`, no leading or trailing `_`."""
    return re.sub(r"[-_.]+", "_", name.lower()).strip("_")


def heldout_names(heldout: Iterable[str], aliases: dict[str, list[str]] | None = None) -> dict[str, str]:
    """package key -> held-out entry: each entry's last name component, plus its aliases."""
    names: dict[str, str] = {}
    for entry in heldout:
        names.setdefault(package_key(entry.split("/")[-1]), entry)
        for alias in (aliases or {}).get(entry, []):
            names.setdefault(package_key(alias), entry)
    return names


def renamed_from(repo: str, names: dict[str, str]) -> str | None:
    """The held-out entry whose name `repo`'s name is a renamed form of (see the module docstring)."""
    n = package_key(repo.split("/")[-1])
    for key, entry in names.items():
        if n == key:
            return entry
        if not n.startswith(key):
            continue
        rest = n[len(key) :]
        if re.fullmatch(r"_?\d+", rest) and (rest.startswith("_") or not key[-1].isdigit()):
            return entry
        if rest.startswith("_") and rest[1:] in FORK_WORDS:
            return entry
    return None


def vendored_dir(path: str, names: dict[str, str]) -> tuple[str, str, bool] | None:
    """(held-out entry, folder, below a vendoring folder) when a folder of `path` is named after a
    held-out package (or, below a vendoring folder, the file's module is), else None."""
    parts = path.split("/")
    below_vendor = False
    for i, part in enumerate(parts[:-1]):
        key = package_key(part)
        if key in names:
            return names[key], "/".join(parts[: i + 1]), below_vendor
        below_vendor = below_vendor or key in VENDOR_DIRS
    stem = package_key(parts[-1].rsplit(".", 1)[0])
    if below_vendor and stem in names:
        return names[stem], path, True
    return None


def resemblance(
    keys: list[list],
    sig: np.ndarray | None,
    held: dict[int, str],
    similarity: float,
    num_perm: int,
    seed: int,
) -> dict[int, set[str]]:
    """Document index -> the held-out entries it has a resembling file in (non-held-out documents)."""
    by_hash: dict[str, set[str]] = {}
    for i, entry in held.items():
        by_hash.setdefault(keys[i][1], set()).add(entry)
    out: dict[int, set[str]] = {}
    for i, key in enumerate(keys):
        if i not in held and key[1] in by_hash:
            out[i] = set(by_hash[key[1]])
    if sig is None or len(sig) != len(keys) or not held:
        return out
    others = [i for i in range(len(keys)) if i not in held]
    for i, candidates in sorted(lsh_query(sig, others, sorted(held), similarity, num_perm).items()):
        for j in sorted(candidates):
            # LSH gives candidates; the estimated Jaccard decides.
            if np.mean(sig[i] == sig[j]) >= similarity:
                out.setdefault(i, set()).add(held[j])
    return out


def find_leaks(
    keys: list[list],
    sig: np.ndarray | None,
    heldout: list[str],
    aliases: dict[str, list[str]] | None = None,
    similarity: float = 0.5,
    fork_overlap: float = 0.5,
    fork_min_files: int = 3,
    num_perm: int = 256,
    seed: int = 1,
) -> dict[str, list[str]]:
    """doc id -> [reason, held-out entry] for every document that is a copy of held-out code.

    `keys` are SignatureStep's `[id, normalised hash, licence rank, stars, repo]`, `sig` the matching
    (len(keys), num_perm) MinHash rows (None: exact copies only count as resembling)."""
    names = heldout_names(heldout, aliases)
    held = {i: e for i, k in enumerate(keys) if (e := heldout_entry(k[4], heldout))}
    similar = resemblance(keys, sig, held, similarity, num_perm, seed)
    by_repo: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if i not in held:
            by_repo.setdefault(key[4] or "", []).append(i)
    leaks: dict[str, list[str]] = {}
    for repo, members in sorted(by_repo.items()):
        counts = Counter(e for i in members for e in similar.get(i, ()))
        renamed = renamed_from(repo, names)
        decision = None
        if renamed and counts[renamed] >= 1:
            decision = ["heldout_renamed", renamed]
        elif counts:
            entry, n = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if n >= fork_min_files and n >= fork_overlap * len(members):
                decision = ["heldout_fork", entry]
        if decision:
            for i in members:
                leaks[keys[i][0]] = decision
            continue
        # Folders named after a held-out package: below a vendoring folder always, else on evidence.
        folders: dict[tuple[str, str], list[int]] = {}
        for i in members:
            hit = vendored_dir(keys[i][0][len(repo) + 1 :], names)
            if hit is None:
                continue
            entry, folder, below_vendor = hit
            if below_vendor:
                leaks[keys[i][0]] = ["heldout_vendored", entry]
            else:
                folders.setdefault((entry, folder), []).append(i)
        for (entry, _folder), idx in folders.items():
            if any(entry in similar.get(i, ()) for i in idx):
                for i in idx:
                    leaks[keys[i][0]] = ["heldout_vendored", entry]
        _copied_folders(keys, repo, [i for i in members if keys[i][0] not in leaks], similar, fork_overlap,
                        fork_min_files, leaks)  # fmt: skip
    return leaks


def _copied_folders(keys: list[list], repo: str, members: list[int], similar: dict[int, set[str]],
                    overlap: float, min_files: int, leaks: dict[str, list[str]]) -> None:  # fmt: skip
    """`heldout_copied`: a folder of the repository, whatever its name (`mylib/_http/` holding httpx),
    in which at least `overlap` of the files, and `min_files` of them, resemble files of one held-out
    repository: the fork rule applied to every folder instead of the whole repository. The topmost
    such folder goes whole (its other files are the copy's glue: `__init__.py`, edited modules)."""
    by_folder: dict[str, list[int]] = {}
    for i in members:
        parts = keys[i][0][len(repo) + 1 :].split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            by_folder.setdefault("/".join(parts[:depth]), []).append(i)
    taken: list[str] = []
    for folder in sorted(by_folder, key=lambda f: (f.count("/"), f)):  # topmost first
        if any(folder.startswith(t + "/") for t in taken):
            continue
        idx = by_folder[folder]
        counts = Counter(e for i in idx for e in similar.get(i, ()))
        if not counts:
            continue
        entry, n = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if n >= min_files and n >= overlap * len(idx):
            taken.append(folder)
            for i in idx:
                leaks[keys[i][0]] = ["heldout_copied", entry]


class HeldoutLeakStep(CurateStep):
    """Decides which documents are copies of held-out code (one task, after DedupStep); writes
    `{id: [reason, held-out entry]}` for those dedup did not already remove."""

    name = "heldout_leaks"
    stage = "dedup"

    def __init__(self, sig_dir: str, removed_path: str, leaks_path: str, tasks: int, heldout: list[str],
                 aliases: dict[str, list[str]], similarity: float, fork_overlap: float, fork_min_files: int,
                 num_perm: int, seed: int, **kw):  # fmt: skip
        super().__init__(**kw)
        self.sig_dir, self.removed_path, self.leaks_path, self.tasks = (
            sig_dir,
            removed_path,
            leaks_path,
            tasks,
        )
        self.heldout, self.aliases = list(heldout), dict(aliases)
        self.similarity, self.fork_overlap, self.fork_min_files = similarity, fork_overlap, fork_min_files
        self.num_perm, self.seed = num_perm, seed

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for _ in data or ():  # the dedup decisions are written when the previous step has run
            pass
        keys: list[list] = []
        mats = []
        for r in range(self.tasks):
            keys += json.loads((Path(self.sig_dir) / f"{r:05d}.json").read_text())
            mats.append(np.load(Path(self.sig_dir) / f"{r:05d}.npy"))
        sig = np.concatenate(mats) if mats else None
        with self.track_time():
            leaks = find_leaks(keys, sig, self.heldout, self.aliases, self.similarity, self.fork_overlap,
                               self.fork_min_files, self.num_perm, self.seed)  # fmt: skip
        removed = json.loads(Path(self.removed_path).read_text())
        leaks = {k: v for k, v in sorted(leaks.items()) if k not in removed}
        write_json_atomic(self.leaks_path, leaks)
        for reason, _entry in leaks.values():
            self.tally.count(reason)
        self.save_tally(rank)
        yield from ()


class HeldoutLeakFilter(CodeFilter):
    """Drops what HeldoutLeakStep found (write stage), so no copy reaches train or valid."""

    name = "heldout_filter"
    stage = "write"

    def __init__(self, leaks_path: str, **kw):
        super().__init__(**kw)
        self.leaks_path = leaks_path
        self._leaks: dict | None = None

    def filter(self, doc):
        if self._leaks is None:
            self._leaks = json.loads(Path(self.leaks_path).read_text())
        hit = self._leaks.get(doc.id)
        if hit:
            doc.metadata["heldout_of"] = hit[1]
            return False, hit[0]
        return True

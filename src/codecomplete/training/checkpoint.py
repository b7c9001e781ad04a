"""Checkpoints that are complete or invisible.

Layout of a run's `checkpoints/` folder:

    step-00000200/            a complete checkpoint (the only kind `--resume auto` and export read)
        ds/                   DeepSpeed's files (model states, ZeRO optimizer shards per rank)
        rng-rank00000.pt ...  each rank's RNG state
        trainer_state.json    step, tokens seen, lr, last losses, validation history
        recipe.yaml           the resolved recipe
        config.json, tokenizer files   for export
        COMPLETE              written last, after an fsync of everything above
    .tmp-step-00000300/       being written (or left by a crash): never read, removed at start

A checkpoint is written under `.tmp-step-*`, marked COMPLETE, then renamed into place. A crash at any
point leaves either no `step-*` folder or a complete one; a `step-*` folder without COMPLETE (copied
by hand, a filesystem without atomic rename) is skipped too.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

MARKER = "COMPLETE"
DS_TAG = "ds"
PREFIX = "step-"
TMP_PREFIX = ".tmp-step-"


def step_dir_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def is_complete(path: Path) -> bool:
    return path.is_dir() and path.name.startswith(PREFIX) and (path / MARKER).is_file()


def complete_checkpoints(ckpt_root: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(ckpt_root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if is_complete(p):
            try:
                found.append((int(p.name[len(PREFIX) :]), p))
            except ValueError:
                continue
    return [p for _, p in sorted(found)]


def latest_checkpoint(ckpt_root: str | Path) -> Path | None:
    found = complete_checkpoints(ckpt_root)
    return found[-1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A complete checkpoint folder from itself, a run's out_dir, or its checkpoints/ folder."""
    p = Path(path)
    if is_complete(p):
        return p
    if p.name.startswith(PREFIX) and p.is_dir():
        raise FileNotFoundError(f"{p} is not a complete checkpoint (no {MARKER} marker): it was interrupted")
    for root in (p, p / "checkpoints"):
        latest = latest_checkpoint(root)
        if latest is not None:
            return latest
    raise FileNotFoundError(f"no complete checkpoint in {p}")


def temp_dir(ckpt_root: Path, step: int) -> Path:
    return ckpt_root / f"{TMP_PREFIX}{step:08d}"


def remove_stale_temps(ckpt_root: Path) -> list[Path]:
    """Folders left by a crash mid-write. Call on rank 0 before any rank starts writing."""
    removed = []
    if ckpt_root.is_dir():
        for p in ckpt_root.iterdir():
            if p.name.startswith(TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def _fsync_tree(path: Path) -> None:
    for dirpath, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit(tmp: Path, final: Path, state: dict[str, Any]) -> None:
    """Mark `tmp` complete and move it into place (rank 0, after every rank finished writing)."""
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
    _fsync_tree(tmp)
    marker = tmp / MARKER
    marker.write_text(json.dumps({"step": state.get("step")}) + "\n")
    _fsync_dir(tmp)
    if final.exists():  # the same step written again (a resumed run re-reaching it): replace
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def prune(ckpt_root: Path, keep_last: int) -> list[Path]:
    done = complete_checkpoints(ckpt_root)
    old = done[:-keep_last] if keep_last > 0 else []
    for p in old:
        # Un-mark first: a crash halfway through the delete leaves an incomplete, ignored folder.
        (p / MARKER).unlink(missing_ok=True)
        shutil.rmtree(p, ignore_errors=True)
    return old


def read_state(ckpt: Path) -> dict[str, Any]:
    return json.loads((ckpt / "trainer_state.json").read_text())

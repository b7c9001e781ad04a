"""Checkpoint bookkeeping: only marked, renamed folders count; pruning keeps the newest."""

from __future__ import annotations

import pytest

from codecomplete.training import checkpoint as ckpt


def _fake(root, step, complete=True, temp=False):
    d = ckpt.temp_dir(root, step) if temp else root / ckpt.step_dir_name(step)
    d.mkdir(parents=True)
    (d / "weights").write_text("x")
    if complete and temp:
        ckpt.commit(d, root / ckpt.step_dir_name(step), {"step": step})
    elif complete:
        (d / ckpt.MARKER).write_text("{}")
    return root / ckpt.step_dir_name(step)


def test_latest_skips_unmarked_and_temporary_folders(tmp_path):
    _fake(tmp_path, 10)
    _fake(tmp_path, 20)
    _fake(tmp_path, 30, complete=False)  # a step-* folder without the marker
    _fake(tmp_path, 40, complete=False, temp=True)  # a crash mid-write
    assert ckpt.latest_checkpoint(tmp_path).name == ckpt.step_dir_name(20)
    assert [p.name for p in ckpt.complete_checkpoints(tmp_path)] == [ckpt.step_dir_name(s) for s in (10, 20)]
    assert ckpt.resolve_checkpoint(tmp_path).name == ckpt.step_dir_name(20)
    with pytest.raises(FileNotFoundError, match="interrupted"):
        ckpt.resolve_checkpoint(tmp_path / ckpt.step_dir_name(30))


def test_commit_renames_into_place_with_state(tmp_path):
    final = _fake(tmp_path, 50, temp=True)
    assert ckpt.is_complete(final) and not ckpt.temp_dir(tmp_path, 50).exists()
    assert ckpt.read_state(final) == {"step": 50}


def test_stale_temps_are_removed_and_prune_keeps_the_newest(tmp_path):
    for s in (1, 2, 3, 4):
        _fake(tmp_path, s)
    _fake(tmp_path, 5, complete=False, temp=True)
    assert [p.name for p in ckpt.remove_stale_temps(tmp_path)] == [ckpt.temp_dir(tmp_path, 5).name]
    removed = ckpt.prune(tmp_path, keep_last=2)
    assert [p.name for p in removed] == [ckpt.step_dir_name(1), ckpt.step_dir_name(2)]
    assert [p.name for p in ckpt.complete_checkpoints(tmp_path)] == [
        ckpt.step_dir_name(3),
        ckpt.step_dir_name(4),
    ]

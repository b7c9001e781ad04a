"""Every shipped recipe loads, validates and builds its stages; bad recipes fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from codecomplete.data.config import CurateConfig
from codecomplete.data.pipeline import build_stages

RECIPES = sorted((Path(__file__).resolve().parents[2] / "configs" / "data").glob("*.yaml"))


def test_the_three_recipes_are_shipped():
    assert {p.stem for p in RECIPES} >= {"local-python", "git-repos", "github-search"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_builds(path, tmp_path):
    cfg = CurateConfig.from_yaml(path, out=str(tmp_path / "out"))
    stages = build_stages(cfg)
    assert [name for name, _ in stages] == ["discover", "process", "dedup", "write", "finalize"]
    assert cfg.dedup.num_perm == 256 and cfg.dedup.threshold == 0.7 and cfg.dedup.ngram == 5
    assert cfg.filters.max_line_length == 1000 and cfg.filters.min_alnum_fraction == 0.25


def test_local_python_recipe_holds_out_packages():
    cfg = CurateConfig.from_yaml(RECIPES[[p.stem for p in RECIPES].index("local-python")])
    assert cfg.license.keep == ["permissive"] and cfg.split.heldout_repos
    assert cfg.sources[0].kind == "python-env"
    assert cfg.split.leak_check  # typer vendors click: its copy must not reach train


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"filters": {"max_sizee": 1}}, "unknown keys"),
        ({"license": {"keep": ["gpl"]}}, "unknown classes"),
        ({"executor": {"kind": "k8s"}}, "executor.kind"),
        ({"sources": [{"kind": "local"}]}, "needs `paths:`"),
        ({"dedup": {"threshold": 1.5}}, "dedup.threshold"),
        ({"split": {"heldout_aliases": {"pypi/pyyaml": ["yaml"]}}}, "not in split.heldout_repos"),
        ({"split": {"fork_overlap": 0.0}}, "fork_overlap"),
    ],
)
def test_bad_recipes_say_what_to_fix(bad, message):
    raw = {"name": "x", "out": "/tmp/x", "sources": [{"kind": "local", "paths": ["."]}], **bad}
    with pytest.raises(ValueError, match=message):
        CurateConfig.from_dict(raw)


def test_pypi_recipe_holds_out_what_the_local_one_does():
    """A model trained on the PyPI corpus is evaluated on the same held-out packages."""
    stems = [p.stem for p in RECIPES]
    local = CurateConfig.from_yaml(RECIPES[stems.index("local-python")])
    big = CurateConfig.from_yaml(RECIPES[stems.index("pypi-permissive")])
    assert big.sources[0].kind == "pypi" and Path(big.sources[0].packages_file).is_file()
    assert big.split.heldout_repos == local.split.heldout_repos and big.split.leak_check
    assert big.license.keep == ["permissive"]

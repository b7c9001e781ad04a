"""The pypi source on sdists built here, found through pip's `--find-links` on a temporary folder
(no network): versions resolved, licences from PKG-INFO and LICENSE files, one repository per
package, a package list with `top`, resuming from the resolved-packages cursor."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from corpus import MIT, clean_module  # noqa: E402

from codecomplete.data.config import CurateConfig  # noqa: E402
from codecomplete.data.document import iter_records  # noqa: E402
from codecomplete.data.pipeline import run_curate  # noqa: E402
from codecomplete.data.sources import pypi  # noqa: E402

GPL_CLASSIFIER = "License :: OSI Approved :: GNU General Public License v3 (GPLv3)"


def _pkg_info(name: str, version: str, license_expr: str | None = None, classifiers=()) -> str:
    lines = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}"]
    if license_expr:
        lines.append(f"License-Expression: {license_expr}")
    lines += [f"Classifier: {c}" for c in classifiers]
    return "\n".join(lines) + "\n\nA package.\n"


def _sdist(folder: Path, name: str, version: str, files: dict[str, str], fmt: str = "tar") -> Path:
    """An sdist as build backends write it: one top-level `<name>-<version>/` folder."""
    top = f"{name.replace('-', '_')}-{version}"
    if fmt == "zip":
        path = folder / f"{top}.zip"
        with zipfile.ZipFile(path, "w") as z:
            for rel, text in files.items():
                z.writestr(f"{top}/{rel}", text)
        return path
    path = folder / f"{top}.tar.gz"
    with tarfile.open(path, "w:gz") as t:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    links = tmp_path_factory.mktemp("links")
    mod = clean_module
    _sdist(
        links, "alpha-lib", "1.0", {"PKG-INFO": _pkg_info("alpha-lib", "1.0", "MIT"), "alpha/old.py": mod(1)}
    )
    _sdist(links, "alpha-lib", "1.2", {
        "PKG-INFO": _pkg_info("alpha-lib", "1.2", "MIT"), "alpha/__init__.py": mod(2), "alpha/core.py": mod(3),
        "alpha/_vendor/six.py": mod(4), "README.md": "# alpha\n",
    })  # fmt: skip
    _sdist(
        links, "alpha-lib", "2.0rc1", {"PKG-INFO": _pkg_info("alpha-lib", "2.0rc1", "MIT"), "a.py": mod(9)}
    )
    (links / "alpha_lib-1.2-py3-none-any.whl").write_bytes(b"")  # a pure wheel of 1.2: found, never fetched
    _sdist(links, "beta", "0.3", {"PKG-INFO": _pkg_info("beta", "0.3", classifiers=[GPL_CLASSIFIER]),
                                  "beta.py": mod(5)})  # fmt: skip
    _sdist(links, "gamma", "2.0", {"PKG-INFO": _pkg_info("gamma", "2.0"), "LICENSE": MIT, "gamma/g.py": mod(6)},
           fmt="zip")  # fmt: skip
    for v, seed in (("0.1", 7), ("0.2", 8)):
        _sdist(
            links,
            "delta",
            v,
            {"PKG-INFO": _pkg_info("delta", v, "Apache-2.0"), f"delta_{seed}.py": mod(seed)},
        )
    return links


def _recipe(links: Path, out: Path, **source) -> dict:
    return {
        "name": "pypi-test",
        "out": str(out),
        "sources": [{"kind": "pypi", "index_url": None, "find_links": [str(links)], **source}],
        "executor": {"tasks": 2, "workers": 1},
        "split": {"valid_fraction": 0.0},
        "decontam": {"enabled": False},
        "write_dropped": True,
        "progress": False,
    }


def test_packages_resolved_downloaded_and_licensed(index, tmp_path):
    out = tmp_path / "out"
    specs = ["alpha-lib", "Beta", "gamma", "delta==0.1", "not-a-package"]
    stats = run_curate(CurateConfig.from_dict(_recipe(index, out, packages=specs)))
    docs = {f"{r['repo']}/{r['path']}": r for r in iter_records(out, split=None)}
    # newest final release (not the rc), pinned version honoured, vendored folder skipped
    assert sorted(docs) == ["pypi/alpha-lib/alpha/__init__.py", "pypi/alpha-lib/alpha/core.py",
                            "pypi/delta/delta_7.py", "pypi/gamma/gamma/g.py"]  # fmt: skip
    assert docs["pypi/alpha-lib/alpha/core.py"]["code"] == clean_module(3)
    assert docs["pypi/alpha-lib/alpha/core.py"]["license"] == "MIT"
    assert docs["pypi/gamma/gamma/g.py"]["license"] == "MIT"  # no metadata licence: the LICENSE file
    assert docs["pypi/delta/delta_7.py"]["license"] == "Apache-2.0"
    assert stats["dropped"]["license_non_permissive"]["docs"] == 1  # beta, GPL by its classifier
    resolved = [json.loads(ln) for ln in (out / "work" / "pypi-resolved.jsonl").read_text().splitlines()]
    by_spec = {r["spec"]: r for r in resolved}
    assert by_spec["alpha-lib"]["version"] == "1.2" and by_spec["alpha-lib"]["pure"] is True
    assert by_spec["delta==0.1"]["version"] == "0.1" and by_spec["gamma"]["pure"] is False
    assert by_spec["not-a-package"]["error"] == "not found"


def test_pure_python_and_top_of_a_ranked_list(index, tmp_path):
    ranked = tmp_path / "ranked.tsv"
    ranked.write_text("name\tversion\trank\nzzz\t1\t\ngamma\t2.0\t2\nalpha-lib\t1.2\t1\ndelta\t0.2\t3\n")
    assert pypi.read_package_list(ranked, top=2) == ["alpha-lib", "gamma"]
    out = tmp_path / "out"
    run_curate(
        CurateConfig.from_dict(_recipe(index, out, packages_file=str(ranked), top=2, pure_python=True))
    )
    repos = {r["repo"] for r in iter_records(out, split=None)}
    assert repos == {"pypi/alpha-lib"}  # gamma has no none-any wheel


def test_resume_reuses_resolved_packages_and_downloads(index, tmp_path):
    out = tmp_path / "out"
    cfg = CurateConfig.from_dict(_recipe(index, out, packages=["alpha-lib", "delta"]))
    first = run_curate(cfg)
    docs = sorted((r["repo"], r["path"], r["code"]) for r in iter_records(out, split=None))
    # a second run from scratch with the cursor kept resolves nothing again: a newer release
    # appearing on the index in between does not change the corpus of a resumed run
    _sdist(
        index,
        "delta",
        "0.3",
        {"PKG-INFO": _pkg_info("delta", "0.3", "MIT"), "delta_new.py": clean_module(11)},
    )
    try:
        for p in ("logs", "documents", "stats.json"):
            target = out / p
            if target.is_dir():
                import shutil

                shutil.rmtree(target)
            else:
                target.unlink()
        second = run_curate(cfg)
    finally:
        (index / "delta-0.3.tar.gz").unlink()
    assert sorted((r["repo"], r["path"], r["code"]) for r in iter_records(out, split=None)) == docs
    assert first["output"] == second["output"] and first["input"]["download_failed"] == 0


def test_recipe_checks():
    with pytest.raises(ValueError, match="packages"):
        CurateConfig.from_dict({"name": "x", "out": "o", "sources": [{"kind": "pypi"}]})
    with pytest.raises(ValueError, match="find_links"):
        CurateConfig.from_dict({"name": "x", "out": "o", "sources": [{"kind": "pypi", "packages": ["a"],
                                                                     "index_url": None}]})  # fmt: skip
    assert pypi.parse_spec("Foo.Bar==1.0  # pinned") == ("Foo.Bar", "1.0")
    with pytest.raises(ValueError):
        pypi.parse_spec("foo>=1")

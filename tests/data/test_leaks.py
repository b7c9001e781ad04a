"""Held-out code must not reach train/valid through copies in other repositories: vendored folders
(typer's `typer/_click/`, pip's `_vendor/packaging/`), renamed copies (`httpx2`) and forks; while
packages that only share a name or a folder name with a held-out package stay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from corpus import clean_module

from codecomplete.data.dedup import minhash, normalized_hash
from codecomplete.data.document import iter_records
from codecomplete.data.leaks import find_leaks, package_key, renamed_from, vendored_dir

HELDOUT = ["pypi/click", "pypi/jinja2", "pypi/packaging", "pypi/httpx"]
NAMES = {package_key(h.split("/")[-1]): h for h in HELDOUT}


def similarity(a: str, b: str) -> float:
    return float((minhash(a, 256, 5, 1) == minhash(b, 256, 5, 1)).mean())


def modified(text: str, seed: int, below: float, above: float) -> str:
    """`text` with its last lines replaced by another module's, until the MinHash Jaccard with the
    original is within [above, below): a copy edited by its vendor."""
    lines = text.splitlines(keepends=True)
    other = clean_module(seed).splitlines(keepends=True)
    for k in range(len(lines) - 1, 0, -1):
        out = "".join(lines[:k] + other[: len(lines) - k])
        if similarity(text, out) < below:
            break
    assert above <= similarity(text, out) < below, "no cut lands in the band: pick another seed"
    return out


@pytest.mark.parametrize(
    "path, expected",
    [
        ("typer/_click/core.py", ("pypi/click", "typer/_click", False)),  # needs evidence: see below
        ("foo/Click/sub/x.py", ("pypi/click", "foo/Click", False)),
        ("pip/_vendor/packaging/version.py", ("pypi/packaging", "pip/_vendor/packaging", True)),
        ("setuptools/extern/packaging/markers.py", ("pypi/packaging", "setuptools/extern/packaging", True)),
        ("vendor/jinja2/ext.py", ("pypi/jinja2", "vendor/jinja2", True)),
        ("lib/third_party/_click.py", ("pypi/click", "lib/third_party/_click.py", True)),  # one-file copy
        ("rich/markdown.py", None),
        ("pip/_internal/utils/packaging.py", None),  # a module named like it, not below a vendoring folder
        ("typer/main.py", None),
        ("packaging_tools/version.py", None),
        ("jinja/environment.py", None),
        ("jinja2_time/ext.py", None),
    ],
)
def test_folders_named_after_a_held_out_package(path, expected):
    assert vendored_dir(path, NAMES) == expected


@pytest.mark.parametrize(
    "repo, expected",
    [
        ("pypi/httpx2", "pypi/httpx"),
        ("pypi/click-8", "pypi/click"),
        ("pypi/packaging-legacy", "pypi/packaging"),
        ("pypi/Starlette_Fork", None),  # starlette is not held out here
        ("pypi/jinja2_fork", "pypi/jinja2"),
        ("pypi/jinja2-3", "pypi/jinja2"),
        ("pallets/click", "pypi/click"),  # the same package from another source
        ("pypi/jinja", None),
        ("pypi/jinja23", None),  # after a trailing digit a version needs a separator
        ("pypi/jinja2-time", None),
        ("pypi/packaging-tools", None),
        ("pypi/httpx-sse", None),
        ("pypi/sphinx-click", None),
        ("pypi/types-click", None),
        ("pypi/clicks", None),
    ],
)
def test_renamed_copies_by_name(repo, expected):
    assert renamed_from(repo, NAMES) == expected


def _keys(docs: dict[str, str]) -> tuple[list[list], np.ndarray]:
    keys, sigs = [], []
    for doc_id, text in docs.items():
        repo = doc_id.split("/", 2)
        keys.append([doc_id, normalized_hash(text), 1, 0, f"{repo[0]}/{repo[1]}"])
        sigs.append(minhash(text, 256, 5, 1))
    return keys, np.stack(sigs)


def test_copies_of_held_out_code_are_found_and_look_alikes_kept():
    click = {f"click/{m}.py": clean_module(10 + i) for i, m in enumerate(("core", "parser", "utils"))}
    httpx = {
        f"httpx/_{m}.py": clean_module(20 + i) for i, m in enumerate(("api", "client", "models", "urls"))
    }
    jinja2 = {"jinja2/environment.py": clean_module(30), "jinja2/ext.py": clean_module(31)}
    docs = {f"pypi/click/{p}": t for p, t in click.items()}
    docs |= {f"pypi/httpx/{p}": t for p, t in httpx.items()}
    docs |= {f"pypi/jinja2/{p}": t for p, t in jinja2.items()}
    docs |= {"pypi/packaging/packaging/version.py": clean_module(40)}
    # typer vendors click, one file edited a little (evidence), one rewritten (no evidence on its own)
    docs |= {
        "pypi/typer/typer/main.py": clean_module(50),
        "pypi/typer/typer/_click/parser.py": modified(click["click/parser.py"], 51, 0.7, 0.5),
        "pypi/typer/typer/_click/core.py": modified(click["click/core.py"], 52, 0.5, 0.1),
    }
    # pip's vendored packaging, whatever its content
    docs |= {
        "pypi/pip/pip/_vendor/packaging/version.py": clean_module(60),
        "pypi/pip/pip/main.py": clean_module(61),
    }
    # httpx2: one edited file of httpx among its own (1 of 4: not a fork by overlap, a fork by name)
    docs |= {"pypi/httpx2/httpx2/_api.py": modified(httpx["httpx/_api.py"], 70, 0.7, 0.5)}
    docs |= {f"pypi/httpx2/httpx2/own{i}.py": clean_module(71 + i) for i in range(3)}
    # an unrelated name, but 3 of its 4 files are edited httpx files: a fork
    docs |= {f"pypi/netclient/netclient/{p[6:]}": modified(t, 80 + i, 0.7, 0.5) for i, (p, t) in
             enumerate(list(httpx.items())[1:])}  # fmt: skip
    docs |= {"pypi/netclient/netclient/extra.py": clean_module(90)}
    # look-alikes that stay: names and folders shared with held-out packages, code not
    docs |= {
        "pypi/jinja/jinja/environment.py": clean_module(100),
        "pypi/httpx-sse/httpx_sse/_api.py": clean_module(101),
        "pypi/packaging-tools/packaging_tools/version.py": clean_module(102),
        "pypi/ddtrace/ddtrace/contrib/jinja2/patch.py": clean_module(103),
        "pypi/jinja2-time/jinja2_time/ext.py": clean_module(104),
        # one copied file does not make a repo a fork: dedup removes the copy, the rest stays
        "pypi/bigapp/bigapp/copied.py": jinja2["jinja2/ext.py"],
        **{f"pypi/bigapp/bigapp/m{i}.py": clean_module(110 + i) for i in range(4)},
    }
    keys, sig = _keys(docs)
    leaks = find_leaks(keys, sig, HELDOUT)
    renamed = ["heldout_renamed", "pypi/httpx"]
    fork = ["heldout_fork", "pypi/httpx"]
    assert leaks == {
        "pypi/typer/typer/_click/parser.py": ["heldout_vendored", "pypi/click"],
        "pypi/typer/typer/_click/core.py": ["heldout_vendored", "pypi/click"],
        "pypi/pip/pip/_vendor/packaging/version.py": ["heldout_vendored", "pypi/packaging"],
        **{d: renamed for d in docs if d.startswith("pypi/httpx2/")},
        **{d: fork for d in docs if d.startswith("pypi/netclient/")},
    }
    kept = {k[0] for k in keys} - set(leaks)
    assert "pypi/typer/typer/main.py" in kept and "pypi/pip/pip/main.py" in kept


def test_held_out_code_copied_under_another_module_name():
    """`mylib/_http/` holds httpx under another name (edited files, its own `__init__`); `mylib`'s
    own modules and a folder with one shared file stay."""
    httpx = {
        f"httpx/_{m}.py": clean_module(20 + i) for i, m in enumerate(("api", "client", "models", "urls"))
    }
    docs = {f"pypi/httpx/{p}": t for p, t in httpx.items()}
    copied = {
        f"pypi/mylib/mylib/_http/{p[7:]}": modified(t, 130 + i, 0.7, 0.5)
        for i, (p, t) in enumerate(httpx.items())
    }
    docs |= copied | {"pypi/mylib/mylib/_http/__init__.py": clean_module(140)}
    own = {f"pypi/mylib/mylib/m{i}.py": clean_module(150 + i) for i in range(6)}
    docs |= own | {"pypi/other/other/net/x.py": modified(httpx["httpx/_api.py"], 160, 0.7, 0.5),
                   **{f"pypi/other/other/net/y{i}.py": clean_module(170 + i) for i in range(3)}}  # fmt: skip
    keys, sig = _keys(docs)
    leaks = find_leaks(keys, sig, ["pypi/httpx"])
    assert leaks == {
        d: ["heldout_copied", "pypi/httpx"] for d in docs if d.startswith("pypi/mylib/mylib/_http/")
    }
    assert not set(own) & set(leaks)


def test_without_signatures_only_exact_copies_are_evidence():
    original = clean_module(1)
    docs = {
        "pypi/click/click/core.py": original,
        "pypi/typer/typer/_click/core.py": original.replace("\n", "  \n"),  # same normalised hash
        "pypi/typer/typer/_click/parser.py": clean_module(2),
        "pypi/rich/rich/click/x.py": modified(original, 3, 0.7, 0.5),  # similar, but no MinHash to see it
    }
    keys, _ = _keys(docs)
    assert find_leaks(keys, None, HELDOUT) == {
        "pypi/typer/typer/_click/core.py": ["heldout_vendored", "pypi/click"],
        "pypi/typer/typer/_click/parser.py": ["heldout_vendored", "pypi/click"],
    }


def _site_packages(root: Path) -> Path:
    """A site-packages of fake distributions (dist-info METADATA + RECORD), each repo `pypi/<name>`."""
    click = {f"click/{m}.py": clean_module(200 + i) for i, m in enumerate(("core", "parser", "utils"))}
    httpx = {f"httpx/_{m}.py": clean_module(210 + i) for i, m in enumerate(("api", "client", "models"))}
    dists = {
        "click": click,
        "packaging": {"packaging/version.py": clean_module(220)},
        "httpx": httpx,
        "typer": {
            "typer/main.py": clean_module(230),
            "typer/params.py": clean_module(231),
            "typer/_click/core.py": modified(click["click/core.py"], 232, 0.5, 0.1),
            "typer/_click/parser.py": modified(click["click/parser.py"], 233, 0.7, 0.5),
            "typer/_click/utils.py": click["click/utils.py"],  # untouched: dedup's exact duplicate
        },
        "setuptools": {
            "setuptools/dist.py": clean_module(240),
            "setuptools/extern/packaging/version.py": clean_module(241),
        },
        "httpx2": {
            "httpx2/_api.py": modified(httpx["httpx/_api.py"], 250, 0.7, 0.5),
            **{f"httpx2/own{i}.py": clean_module(251 + i) for i in range(3)},
        },
        "httpx-sse": {"httpx_sse/_api.py": clean_module(260)},
        "packaging-tools": {"packaging_tools/version.py": clean_module(261)},
    }
    sp = root / "site-packages"
    for name, files in dists.items():
        info = sp / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.4\nName: {name}\nVersion: 1.0\nLicense-Expression: MIT\n"
        )
        for rel, text in files.items():
            (sp / rel).parent.mkdir(parents=True, exist_ok=True)
            (sp / rel).write_text(text)
        (info / "RECORD").write_text("".join(f"{rel},,\n" for rel in [*files, f"{info.name}/METADATA"]))
    return sp


def _curate(tmp_path: Path, sp: Path):
    from codecomplete.data.config import CurateConfig
    from codecomplete.data.pipeline import run_curate

    out = tmp_path / "out"
    raw = {
        "name": "leaks",
        "out": str(out),
        "sources": [{"kind": "python-env", "stdlib": False, "site_packages": [str(sp)]}],
        "split": {
            "heldout_repos": ["pypi/click", "pypi/packaging", "pypi/httpx"],
            "valid_fraction": 0.0,
        },
        "decontam": {"enabled": False},
        "redact": {"enabled": False},
        "executor": {"tasks": 1, "workers": 1},
        "write_dropped": True,
        "progress": False,
    }
    stats = run_curate(CurateConfig.from_dict(raw))
    docs = {
        split: {f"{r['repo']}/{r['path']}" for r in iter_records(out, split)}
        for split in ("train", "valid", "test")
    }
    return out, stats, docs


def test_curate_keeps_held_out_copies_out_of_train(tmp_path):
    from codecomplete.data.document import read_jsonl_gz
    from codecomplete.data.report import summary

    sp = _site_packages(tmp_path)
    out, stats, docs = _curate(tmp_path, sp)
    assert {d.split("/")[1] for d in docs["test"]} == {"click", "packaging", "httpx"}  # exactly the held out
    assert not docs["valid"]
    assert docs["train"] == {
        "pypi/typer/typer/main.py",
        "pypi/typer/typer/params.py",
        "pypi/setuptools/setuptools/dist.py",
        "pypi/httpx-sse/httpx_sse/_api.py",
        "pypi/packaging-tools/packaging_tools/version.py",
    }
    assert {k: v["docs"] for k, v in stats["dropped"].items()} == {
        "exact_duplicate": 1,
        "heldout_vendored": 3,
        "heldout_renamed": 4,
    }
    click = stats["heldout_leaks"]["pypi/click"]
    assert click["docs"] == 3 and click["repos"] == {"pypi/typer": {"docs": 3, "bytes": click["bytes"]}}
    assert {k: v["docs"] for k, v in click["reasons"].items()} == {
        "exact_duplicate": 1,
        "heldout_vendored": 2,
    }
    assert stats["heldout_leaks"]["pypi/httpx"]["reasons"]["heldout_renamed"]["docs"] == 4
    assert {k: v["docs"] for k, v in stats["heldout_leaks"]["pypi/packaging"]["repos"].items()} == {
        "pypi/setuptools": 1
    }
    assert "pypi/click" in summary(stats) and "heldout_vendored" in (out / "report.html").read_text()
    audit = [r for p in (out / "dropped" / "heldout_vendored").glob("*.jsonl.gz") for r in read_jsonl_gz(p)]
    assert {(r["path"], r["heldout_of"]) for r in audit} == {
        ("typer/_click/core.py", "pypi/click"),
        ("typer/_click/parser.py", "pypi/click"),
        ("setuptools/extern/packaging/version.py", "pypi/packaging"),
    }

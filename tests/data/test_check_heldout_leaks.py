"""scripts/check_heldout_leaks.py: the check run before training on a corpus finds a held-out file
that reached the training split, as itself, as a vendored copy, or as an edited fork."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = "\n".join(
    f"def handler_{i}(request, value={i}):\n    return request.send(value * {i})" for i in range(12)
)


def _write(path: Path, docs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for d in docs:
            f.write(json.dumps({"sha": "x" + d["path"], **d}) + "\n")


def _check(tmp_path: Path, train: list[dict]) -> subprocess.CompletedProcess:
    evalset = tmp_path / "eval.jsonl.gz"
    _write(evalset, [{"repo": "pypi/held", "path": "held/routing.py", "code": CODE, "sha": "abc"}])
    corpus = tmp_path / "corpus"
    _write(corpus / "documents" / "train" / "00000.jsonl.gz", train)
    script = ROOT / "scripts" / "check_heldout_leaks.py"
    cmd = [sys.executable, str(script), "--eval", str(evalset), "--corpus", str(corpus)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_a_clean_corpus_passes(tmp_path):
    r = _check(tmp_path, [{"repo": "pypi/other", "path": "other/a.py", "code": "x = 1\n" * 40}])
    assert r.returncode == 0 and "0 leak(s)" in r.stdout, r.stdout + r.stderr


def test_copies_of_held_out_files_are_found(tmp_path):
    fork = CODE.replace("handler_11", "renamed_11").replace("handler_10", "renamed_10")
    r = _check(
        tmp_path,
        [
            {"repo": "pypi/held", "path": "held/other.py", "code": "y = 2\n"},  # the package itself
            {"repo": "pypi/big", "path": "big/_vendor/held/routing.py", "code": "z = 3\n"},  # vendored path
            {"repo": "pypi/fork", "path": "fork/routes.py", "code": fork},  # an edited copy
        ],
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "pypi/held/held/other.py: an evaluated package" in r.stdout
    assert "big/_vendor/held/routing.py: a copy of pypi/held/held/routing.py (path)" in r.stdout
    assert "pypi/fork/fork/routes.py: holds" in r.stdout and "3 leak(s)" in r.stdout

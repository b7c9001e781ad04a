"""scripts/compare_evals.py: the paired comparison that decides which weights ship matches the
two runs' examples and averages the per-example differences."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "compare_evals.py"


def _load():
    spec = importlib.util.spec_from_file_location("compare_evals", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(preds: dict[tuple[str, int], tuple[str, float, bool]]) -> dict:
    examples = [
        {"file": f, "line": n, "target": "t", "prediction": p, "edit_similarity": es, "exact_match": em}
        for (f, n), (p, es, em) in preds.items()
    ]
    ms = [e["edit_similarity"] for e in examples]
    return {
        "task": "line-completion",
        "metrics": {"edit_similarity": sum(ms) / len(ms), "exact_match": 0.0, "examples": len(ms)},
        "examples": examples,
    }


def test_paired_differences_over_the_shared_examples_only():
    cmp = _load()
    old = _result(
        {("a.py", 1): ("x", 40.0, False), ("a.py", 2): ("y", 60.0, False), ("b.py", 9): ("z", 0, False)}
    )
    new = _result(
        {("a.py", 1): ("x", 40.0, False), ("a.py", 2): ("t", 100.0, True), ("c.py", 3): ("q", 0, False)}
    )
    d = cmp.paired(old, new)
    assert d["examples"] == 2 and d["changed"] == 1
    assert d["edit_similarity"][0] == pytest.approx(20.0)  # (0 + 40) / 2
    assert d["exact_match"][0] == pytest.approx(50.0)  # one of two became exact: +50 points
    assert d["edit_similarity"][1] == pytest.approx(20.0)  # stdev([0, 40]) / sqrt(2)


def test_the_command_prints_the_difference_and_refuses_other_tasks(tmp_path):
    old = _result({("a.py", 1): ("x", 40.0, False), ("a.py", 2): ("y", 60.0, False)})
    new = _result({("a.py", 1): ("x", 50.0, False), ("a.py", 2): ("y", 70.0, False)})
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "old.json"), str(tmp_path / "new.json")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and "edit similarity +10.00" in run.stdout
    (tmp_path / "fim.json").write_text(json.dumps({**new, "task": "fim"}))
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "old.json"), str(tmp_path / "fim.json")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "not comparable" in run.stderr

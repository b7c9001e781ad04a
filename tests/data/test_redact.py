"""Redaction: the labelled set's precision and recall per kind, and a run of the planted corpus
that leaves no secret anywhere under its output folder."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from corpus import LEAKED  # noqa: E402
from pii_cases import KINDS, negatives, positives, score  # noqa: E402

from codecomplete.data.redact import Redactor  # noqa: E402


def test_labelled_set_precision_and_recall_per_kind():
    rows = score(Redactor().redact)
    misses = rows.pop("_misses")
    assert set(rows) == set(KINDS)
    for kind, r in rows.items():
        assert r["values"] >= 20, kind  # every kind is in the set, in many positions
        assert r["recall"] >= 0.99, (kind, r, [t for k, t in misses if k == kind][:3])
        assert r["precision"] >= 0.95, (kind, r)


def test_negatives_come_back_unchanged():
    r = Redactor()
    changed = [(c.text, r.redact(c.text)) for c in negatives() if r.redact(c.text)[0] != c.text]
    assert len(changed) <= len(negatives()) // 20, changed  # the precision target, on negatives alone


@pytest.mark.parametrize("case", [c for c in positives() if c.where in ("setdefault_arg", "comment_export")][:60],
                         ids=lambda c: f"{c.kind}-{c.where}")  # fmt: skip
def test_issue_positions(case):
    """The positions that leaked before: a call argument after the name, an `export` in a comment."""
    out, counts = Redactor().redact(case.text)
    assert all(v not in out for v in case.values) and sum(counts.values()) >= 1


def _every_text_under(folder: Path):
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            raw = path.read_bytes()
            if path.name.endswith(".gz"):
                raw = gzip.decompress(raw)
            yield path, raw.decode("utf-8", errors="replace")


def test_no_secret_left_under_the_output_folder(curated):
    """Documents, dropped audit copies, intermediate shards, logs, stats: none holds a planted value."""
    _, out, stats = curated
    assert not (out / "work" / "processed").exists()  # the intermediate shards are gone after the run
    found = [
        (str(p.relative_to(out)), k)
        for p, text in _every_text_under(out)
        for k, v in LEAKED.items()
        if v in text
    ]
    assert not found, found
    for kind in ("api_key", "email", "ip_address", "webhook_url", "jwt", "password"):
        assert stats["redactions"].get(kind, 0) >= 1, (kind, stats["redactions"])


def test_gates_find_every_needle_like_str_find():
    """The numpy gate search gives str.find's positions, non-ASCII text included."""
    import random

    from codecomplete.data.redactor import API_KEY_GATES, SECRET_GATES, _finds, _Gates

    rnd = random.Random(2)
    pieces = [
        "key",
        "SK",
        "sk-",
        "AKIA",
        "ghp_",
        "token",
        "é",
        "\u00a0",
        "\u0661",
        "x",
        " ",
        "\n",
        "-us",
        "pwd",
    ]
    for needles in (API_KEY_GATES, SECRET_GATES):
        gates = _Gates(needles)
        for _ in range(2000):
            text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 12)))
            assert sorted(gates.find(text)) == sorted(_finds(text, needles)), text

"""The planted corpus through the default filters: every planted case removed (with its reason) or
redacted, no clean file lost, outputs per the document contract."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from codecomplete.data.document import iter_records, read_jsonl_gz


def _documents(out: Path) -> dict[str, dict]:
    return {f"{r['repo']}/{r['path']}": r for r in iter_records(out, split=None)}


def _dropped(out: Path) -> dict[str, str]:
    reasons = {}
    for shard in sorted((out / "dropped").glob("*/*.jsonl.gz")):
        for rec in read_jsonl_gz(shard):
            reasons[f"{rec['repo']}/{rec['path']}"] = rec["filter_reason"]
    return reasons


def test_every_clean_file_is_kept(curated):
    corpus, out, _ = curated
    docs = _documents(out)
    missing = sorted(set(corpus.clean) - set(docs))
    assert not missing, f"clean files dropped: {missing[:5]} ({_dropped(out).get(missing[0])})"
    for doc_id, text in corpus.clean.items():
        if "shared_copy" not in doc_id:
            assert docs[doc_id]["code"] == text  # untouched: nothing to redact in a clean file


def test_every_planted_case_has_its_reason(curated):
    corpus, out, _ = curated
    docs, dropped = _documents(out), _dropped(out)
    wrong = {}
    for doc_id, expected in corpus.planted.items():
        if expected.startswith("redact:"):
            got = "kept" if doc_id in docs else dropped.get(doc_id)
            if got != "kept" or expected.split(":")[1] not in docs[doc_id].get("redactions", {}):
                wrong[doc_id] = (expected, got, docs.get(doc_id, {}).get("redactions"))
        elif dropped.get(doc_id) != expected:
            wrong[doc_id] = (expected, dropped.get(doc_id), doc_id in docs)
    assert not wrong, wrong


def test_ignored_and_vendored_files_are_never_read(curated):
    corpus, out, _ = curated
    seen = set(_documents(out)) | set(_dropped(out))
    assert not seen & set(corpus.never_read)
    assert "mit-lib/pkg/untracked_mod.py" in seen


def test_redactions_replace_the_secret_with_a_placeholder(curated):
    _, out, stats = curated
    docs = _documents(out)
    aws = docs["mit-lib/pkg/aws_settings.py"]["code"]
    assert "AKIAIOSFODNN7EXAMPLE" not in aws and "wJalrXUtnFEMI" not in aws and aws.count("<API_KEY>") == 2
    keys = docs["mit-lib/pkg/keys.py"]["code"]
    assert "MIIEpAIBAAKCAQEA" not in keys and "<PRIVATE_KEY>" in keys
    assert "jane.doe@example.com" not in docs["mit-lib/pkg/contact.py"]["code"]
    server = docs["mit-lib/pkg/server.py"]["code"]
    assert "93.184.216.34" not in server and '"127.0.0.1"' in server  # loopback is not PII
    assert "correct-horse-battery-9" not in docs["mit-lib/pkg/db.py"]["code"]
    assert stats["redactions"]["api_key"] >= 2 and stats["redactions"]["email"] >= 1


def test_duplicates_keep_the_held_out_then_most_permissive_copy(curated):
    _, out, stats = curated
    dropped = {}
    for shard in sorted((out / "dropped" / "exact_duplicate").glob("*.jsonl.gz")):
        for rec in read_jsonl_gz(shard):
            dropped[f"{rec['repo']}/{rec['path']}"] = rec["duplicate_of"]
    assert dropped == {
        "apache-tools/pkg/shared.py": "mit-lib/pkg/shared_copy.py",  # MIT beats Apache
        "mit-lib/pkg/common_copy.py": "heldout-lib/lib/common.py",  # held out beats everything: no leak
    }
    # ... and the removed copy is reported as a copy of the held-out repository
    leak = stats["heldout_leaks"]["heldout-lib"]
    assert (
        leak["docs"] == 1
        and set(leak["reasons"]) == {"exact_duplicate"}
        and set(leak["repos"]) == {"mit-lib"}
    )


def test_document_contract_and_split_by_repo(curated):
    corpus, out, stats = curated
    for split in ("train", "valid", "test"):
        for shard in (out / "documents" / split).glob("*.jsonl.gz"):
            for rec in read_jsonl_gz(shard):
                assert {"code", "repo", "path", "license", "language", "size", "sha"} <= set(rec)
                assert rec["size"] == len(rec["code"].encode())
                assert (rec["repo"] == "heldout-lib") == (split == "test")
    mit = next(iter_records(out, "train"))
    assert mit["license"] == "MIT" and mit["language"] == "python" and len(mit["sha"]) == 40
    assert stats["output"]["splits"]["test"]["docs"] > 0 and stats["license"]["Apache-2.0"]["docs"] > 0
    # stats.json counts bytes removed per reason; the report has its plots inline
    assert stats["dropped"]["too_large"]["bytes"] > 100 * 1024
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 5 and "near_duplicate" in html and "Removed by reason" in html
    assert json.loads((out / "stats.json").read_text()) == stats


def test_a_half_written_shard_is_never_read(curated, tmp_path):
    """Only renamed, complete shards count; a `.tmp` left by a killed task is ignored by readers."""
    _, out, _ = curated
    shards = sorted((out / "documents" / "train").glob("*"))
    assert shards and all(s.name.endswith(".jsonl.gz") for s in shards)
    for s in shards:
        with gzip.open(s, "rt") as f:
            for line in f:
                json.loads(line)

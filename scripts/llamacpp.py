"""llama.cpp as the yardstick of `make bench`: build `llama-server` once per machine, convert a model.

    python scripts/llamacpp.py build                      # ~15-20 min on 2 cores, skipped when built
    python scripts/llamacpp.py convert models/codecomplete-tiny-py   # -> <cache>/gguf/<name>-f32.gguf

The source is the `llama-cpp-python` source package from the package registry (its
`vendor/llama.cpp`), built with CMake into a cache folder outside the repository
(`$CODECOMPLETE_CACHE` or ~/.cache/codecomplete/llama.cpp). Nothing here runs in CI; nothing is
downloaded at run time except that one source package, once. `scripts/bench.py --llamacpp` uses
`ensure_server()` and `ensure_gguf()`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

PACKAGE = "llama-cpp-python"


def cache_dir() -> Path:
    root = os.environ.get("CODECOMPLETE_CACHE") or Path.home() / ".cache" / "codecomplete"
    return Path(root) / "llama.cpp"


def _sdist(cache: Path) -> Path:
    """The newest source package of llama-cpp-python, downloaded once into the cache."""
    have = sorted(cache.glob("llama_cpp_python-*.tar.gz"))
    if have:
        return have[-1]
    index = os.environ.get("PYPI_JSON", "https://pypi.org/pypi")
    url = f"{index}/{PACKAGE}/json"
    with urllib.request.urlopen(url, timeout=120) as r:  # the registry's JSON API, one package
        info = json.load(r)
    sdist = next(f for f in info["urls"] if f["packagetype"] == "sdist")
    target = cache / sdist["filename"]
    print(f"downloading {sdist['filename']} ({sdist['size'] / 1e6:.0f} MB)", flush=True)
    with urllib.request.urlopen(urllib.parse.urljoin(url, sdist["url"]), timeout=600) as r:
        target.write_bytes(r.read())
    return target


def source_dir(cache: Path | None = None) -> Path:
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    sdist = _sdist(cache)
    src = cache / sdist.name.removesuffix(".tar.gz")
    if not (src / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        with tarfile.open(sdist) as tar:
            tar.extractall(cache, filter="data")
    return src / "vendor" / "llama.cpp"


def server_path(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "build" / "bin" / "llama-server"


def ensure_server(jobs: int | None = None) -> Path:
    """Path to a built `llama-server`, building it first if this machine has none."""
    cache = cache_dir()
    exe = server_path(cache)
    if exe.exists():
        return exe
    src = source_dir(cache)
    build = cache / "build"
    flags = [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DLLAMA_CURL=OFF",  # no downloads from the server
        "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",  # the prebuilt web UI is fetched from the network
        "-DLLAMA_BUILD_UI=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_SERVER=ON",
        "-DLLAMA_BUILD_TOOLS=ON",
        "-DGGML_NATIVE=ON",  # this machine's SIMD (the comparison is on this machine)
    ]
    subprocess.run(["cmake", "-S", str(src), "-B", str(build), *flags], check=True)
    jobs = jobs or os.cpu_count() or 1
    subprocess.run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs)], check=True)
    if not exe.exists():
        raise SystemExit(f"built, but {exe} is missing")
    return exe


def ensure_gguf(model_dir: str | Path, python: str = sys.executable) -> Path:
    """The model converted to GGUF f32 with llama.cpp's own `convert_hf_to_gguf.py` (once)."""
    model_dir = Path(model_dir).resolve()
    cache = cache_dir()
    out = cache / "gguf" / f"{model_dir.name}-f32.gguf"
    if out.exists() and out.stat().st_mtime >= _newest(model_dir):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    src = source_dir(cache)
    env = dict(os.environ, PYTHONPATH=str(src / "gguf-py"), NO_LOCAL_GGUF="")
    with tempfile.TemporaryDirectory() as tmp:
        # llama.cpp's GPT-2 converter reads `n_ctx`, which newer transformers configs no longer
        # write (`n_positions` holds it): convert from a linked copy whose config has both.
        for f in model_dir.iterdir():
            if f.is_file() and f.name != "config.json":
                (Path(tmp) / f.name).symlink_to(f)
        config = json.loads((model_dir / "config.json").read_text())
        if "n_positions" in config:
            config.setdefault("n_ctx", config["n_positions"])
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        args = [str(src / "convert_hf_to_gguf.py"), tmp, "--outtype", "f32", "--outfile", str(out)]
        subprocess.run([python, "-c", _CONVERT, *args], check=True, env=env, cwd=src)
    return out


# The converter refuses a byte-level BPE tokenizer whose pre-tokenizer it has no hash for (ours is
# trained for this project). The benchmark sends token ids from our own tokenizer, never text, so
# llama.cpp's pre-tokenizer is never used: name it "gpt-2" for unknown ones and convert.
_CONVERT = """
import runpy, sys
sys.argv = sys.argv[1:]
sys.path.insert(0, ".")
from conversion import base
known = base.TextModel.get_vocab_base_pre
def pre(self, tokenizer):
    try:
        return known(self, tokenizer)
    except NotImplementedError:
        return "gpt-2"
base.TextModel.get_vocab_base_pre = pre
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _newest(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.iterdir() if p.is_file()), default=0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build llama-server into the cache (skipped when built)")
    b.add_argument("--jobs", type=int, default=None)
    c = sub.add_parser("convert", help="convert an HF model folder to GGUF f32")
    c.add_argument("model")
    args = ap.parse_args()
    if args.cmd == "build":
        print(ensure_server(args.jobs))
    else:
        print(ensure_gguf(args.model))


if __name__ == "__main__":
    main()

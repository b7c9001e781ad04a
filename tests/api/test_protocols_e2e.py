"""End to end: `codecomplete serve` with a tiny random model, driven by the `ollama` Python package,
the `ollama` JS package (node), a llama.vim-shaped /infill sequence and a Tabby-shaped request.

The model is random, so the tests assert what holds for any model: shapes, greedy answers that
agree between streaming and not, prefix-cache hits counted in /metrics, 4xx for bad bodies.

The JS test installs the pinned npm package once into ~/.cache/codecomplete/npm (outside the
repository; npm's registry is the only network it uses) and skips when node or npm is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import ollama
import pytest

from serving import serve_subprocess

pytestmark = pytest.mark.slow

OLLAMA_JS_VERSION = "0.6.4"
NPM_CACHE = Path(os.environ.get("CODECOMPLETE_NPM_CACHE", Path.home() / ".cache" / "codecomplete" / "npm"))

PREFIX = "def fibonacci(n):\n    "
SUFFIX = "\n\nprint(fibonacci(10))\n"


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with serve_subprocess(tiny_model_dir, "--served-model-name", "tiny", "--num-threads", "1") as base:
        yield base


def metric(base: str, name: str) -> float:
    text = httpx.get(base + "/metrics").text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


# --- Ollama, Python package ----------------------------------------------------------------------


def test_ollama_python_generate_with_suffix(server):
    client = ollama.Client(host=server, timeout=60)
    options = {"num_predict": 8, "temperature": 0}
    r = client.generate(model="tiny", prompt=PREFIX, suffix=SUFFIX, options=options)
    assert r.done and r.done_reason in ("stop", "length") and r.model == "tiny"
    assert isinstance(r.response, str) and 0 < r.eval_count <= 8 and r.prompt_eval_count > 0
    assert r.total_duration > 0 and r.created_at
    parts = list(client.generate(model="tiny", prompt=PREFIX, suffix=SUFFIX, options=options, stream=True))
    assert [p.done for p in parts][-1] is True and not any(p.done for p in parts[:-1])
    assert "".join(p.response for p in parts) == r.response  # greedy: the same text either way
    assert parts[-1].eval_count == r.eval_count


def test_ollama_python_listing_and_errors(server):
    client = ollama.Client(host=server, timeout=60)
    assert [m.model for m in client.list().models] == ["tiny"]
    show = client.show("tiny")
    assert "insert" in show.capabilities and show.modelinfo["codecomplete.context_length"] == 256
    assert client.ps().models[0].model == "tiny"
    with pytest.raises(ollama.ResponseError) as e:
        client.generate(model="tiny", prompt="x", options={"temperature": 50})
    assert e.value.status_code == 400 and "temperature" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        client.generate(model="tiny", prompt="x", format="json")
    assert e.value.status_code == 400 and "format" in e.value.error


# --- Ollama, JS package --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ollama_js() -> Path:
    """The `ollama` npm package, installed once outside the repository."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed (apt-get install nodejs npm)")
    package = NPM_CACHE / "node_modules" / "ollama" / "package.json"
    if not package.exists() or json.loads(package.read_text())["version"] != OLLAMA_JS_VERSION:
        NPM_CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(NPM_CACHE),
                f"ollama@{OLLAMA_JS_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.skip(f"npm install ollama@{OLLAMA_JS_VERSION} failed: {done.stderr[-500:]}")
    return NPM_CACHE / "node_modules"


JS = r"""
const { Ollama } = require("ollama");
const [host, prefix, suffix] = process.argv.slice(2);
(async () => {
  const client = new Ollama({ host });
  const options = { num_predict: 8, temperature: 0 };
  const whole = await client.generate({ model: "tiny", prompt: prefix, suffix, options });
  const parts = [];
  for await (const part of await client.generate({ model: "tiny", prompt: prefix, suffix, options, stream: true })) {
    parts.push(part);
  }
  let error = null;
  try {
    await client.generate({ model: "tiny", prompt: "x", options: { num_predict: -7 } });
  } catch (e) {
    error = { status: e.status_code, message: e.error };
  }
  const tags = await client.list();
  console.log(JSON.stringify({ whole, parts, error, tags }));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test_ollama_js_generate_with_suffix(server, ollama_js, tmp_path):
    script = tmp_path / "generate.cjs"
    script.write_text(JS)
    env = dict(os.environ, NODE_PATH=str(ollama_js))
    done = subprocess.run(
        ["node", str(script), server, PREFIX, SUFFIX], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    whole, parts = out["whole"], out["parts"]
    assert whole["done"] is True and whole["model"] == "tiny" and 0 < whole["eval_count"] <= 8
    assert parts[-1]["done"] is True and not any(p["done"] for p in parts[:-1])
    assert "".join(p["response"] for p in parts) == whole["response"]
    assert out["error"]["status"] == 400 and "num_predict" in out["error"]["message"]
    assert [m["name"] for m in out["tags"]["models"]] == ["tiny"]


# --- llama.cpp /infill, the way llama.vim sends it -----------------------------------------------

EXTRA = [
    {"filename": "utils/strings.py", "text": "def shout(text):\n    return text.upper() + '!'\n", "time": 1},
    {
        "filename": "utils/numbers.py",
        "text": "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n",
        "time": 2,
    },
]


def _vim_request(prefix: str, middle: str, suffix: str, indent: int) -> dict:
    # llama.vim's llama#fim body (autoload/llama.vim), with a small n_predict for the tiny model.
    return {
        "id_slot": 0,
        "input_prefix": prefix,
        "input_suffix": suffix,
        "input_extra": EXTRA,
        "prompt": middle,
        "n_predict": 8,
        "stop": [],
        "n_indent": indent,
        "top_k": 40,
        "top_p": 0.90,
        "samplers": ["top_k", "top_p", "infill"],
        "stream": False,
        "cache_prompt": True,
        "t_max_prompt_ms": 500,
        "t_max_predict_ms": 1000,
        "response_fields": [
            "content",
            "timings/prompt_n",
            "timings/prompt_ms",
            "timings/prompt_per_token_ms",
            "timings/prompt_per_second",
            "timings/predicted_n",
            "timings/predicted_ms",
            "timings/predicted_per_token_ms",
            "timings/predicted_per_second",
            "truncated",
            "tokens_cached",
        ],
    }


def test_llama_vim_sequence_hits_the_prefix_cache(server):
    hits = "codecomplete_prefix_cache_hits_total"
    reused = "codecomplete_prefix_cache_reused_tokens_total"
    assert httpx.get(server + "/health").json()["status"] == "ok"  # what llama.cpp clients read
    # The ring-buffer warm-up: only the extra context, nothing generated.
    warmup = {"id_slot": 0, "input_prefix": "", "input_suffix": "", "input_extra": EXTRA, "prompt": ""}
    warmup |= {"n_predict": 0, "temperature": 0.0, "samplers": [], "stream": False, "cache_prompt": True}
    warmup |= {"t_max_prompt_ms": 1, "t_max_predict_ms": 1, "response_fields": [""]}
    r = httpx.post(server + "/infill", json=warmup, timeout=60)
    assert r.status_code == 200 and r.json() == {}
    before_hits, before_reused = metric(server, hits), metric(server, reused)
    # Then the user types on one line: the prefix, the extra context and the suffix stay the same.
    prefix = "from utils.strings import shout\nfrom utils.numbers import clamp\n\n\ndef greet(name):\n"
    suffix = "\n\nprint(greet('world'))\n"
    typed = ["    return", "    return s", "    return sh"]
    for middle in typed:
        r = httpx.post(server + "/infill", json=_vim_request(prefix, middle, suffix, 4), timeout=60)
        assert r.status_code == 200, r.text
        out = r.json()
        assert isinstance(out["content"], str) and out["truncated"] is False
        assert out["timings/predicted_n"] <= 8 and out["tokens_cached"] >= out["timings/prompt_n"] > 0
        assert re.search(r'"content"\s*:"', r.text)  # llama.vim's check before it decodes
    # Every keystroke found its prompt's start in the cache: the first one the warm-up's.
    assert metric(server, hits) - before_hits >= len(typed)
    assert metric(server, reused) - before_reused >= len(typed) * 16


def test_infill_stream_and_props(server):
    props = httpx.get(server + "/props").json()
    assert props["default_generation_settings"]["n_ctx"] == 256
    body = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 6, "stream": True, "temperature": 0}
    with httpx.stream("POST", server + "/infill", json=body, timeout=60) as r:
        assert r.status_code == 200
        events = [json.loads(line[len("data: ") :]) for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1]["stop"] is True and all(e["stop"] is False for e in events[:-1])
    whole = httpx.post(server + "/infill", json=body | {"stream": False}, timeout=60).json()
    assert "".join(e["content"] for e in events) == whole["content"]


# --- Tabby ---------------------------------------------------------------------------------------


def test_tabby_completion_and_events(server):
    health = httpx.get(server + "/v1/health").json()
    assert health["model"] == "tiny" and health["version"]["git_describe"]
    body = {
        "language": "python",
        "segments": {
            "prefix": PREFIX,
            "suffix": SUFFIX,
            "filepath": "fib.py",
            "declarations": [{"filepath": "utils/strings.py", "body": "def shout(text): ..."}],
            "relevant_snippets_from_changed_files": [{"filepath": "a.py", "body": "A = 1", "score": 0.5}],
        },
        "temperature": 0,
    }
    r = httpx.post(
        server + "/v1/completions", json=body, headers={"Authorization": "Bearer tabby-token"}, timeout=60
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"].startswith("cmpl-") and out["choices"][0]["index"] == 0
    assert isinstance(out["choices"][0]["text"], str)
    event = {"type": "view", "completion_id": out["id"], "choice_index": 0, "view_id": "v1"}
    assert httpx.post(server + "/v1/events", json=event).status_code == 200
    assert metric(server, 'codecomplete_client_events_total{client="tabby",event="view"}') >= 1


@pytest.mark.parametrize(
    "path,body,shape",
    [
        ("/infill", b'{"input_prefix": 3}', "llamacpp"),
        ("/infill", b"{", "llamacpp"),
        ("/api/generate", b'{"model": "tiny", "prompt": "x", "options": {"top_k": -1}}', "ollama"),
        ("/api/generate", b"[]", "ollama"),
        ("/api/show", b'{"model": 3}', "ollama"),
        ("/v1/completions", b'{"segments": {"prefix": 3}}', "tabby"),
        ("/v1/events", b'{"type": "view"}', "tabby"),
    ],
)
def test_bad_bodies_are_4xx_in_the_protocols_shape(server, path, body, shape):
    r = httpx.post(server + path, content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    if shape == "llamacpp":
        assert r.json()["error"]["type"] == "invalid_request_error"
    elif shape == "ollama":
        assert isinstance(r.json()["error"], str)
    else:
        assert r.headers["content-type"].startswith("text/plain") and r.text

"""Inputs for the eval tests (held-out files, a token split, HumanEval-style problems) and a fake
OpenAI-compatible server on loopback that answers like an oracle."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

SOURCES = {
    "geometry.py": '''"""Small geometry helpers."""

import math


def distance(a, b):
    dx = a[0] - b[0]
    dy = a[1] - b[1]
    return math.sqrt(dx * dx + dy * dy)


def perimeter(points):
    total = 0.0
    for i in range(len(points)):
        total += distance(points[i], points[(i + 1) % len(points)])
    return total


class Box:
    def __init__(self, width, height):
        self.width = width
        self.height = height

    def area(self):
        return self.width * self.height
''',
    "text/words.py": """import re

WORD = re.compile(r"[A-Za-z']+")


def count_words(text):
    counts = {}
    for word in WORD.findall(text.lower()):
        counts[word] = counts.get(word, 0) + 1
    return counts


async def first_line(stream):
    async for line in stream:
        if line.strip():
            return line.rstrip("\\n")
    return None
""",
}


@pytest.fixture(scope="session")
def py_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("heldout-py")
    for name, text in SOURCES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture(scope="session")
def curated_dir(tmp_path_factory) -> Path:
    """The curated-documents contract: <out>/documents/<split>/*.jsonl.gz, held-out repos in `test`."""
    root = tmp_path_factory.mktemp("curated")
    other = {"other.py": "def other():\n    return 1\n"}
    for split, repo, files in (
        ("train", "train/pkg", other),
        ("valid", "valid/pkg", other),
        ("test", "heldout/pkg", SOURCES),
    ):
        (root / "documents" / split).mkdir(parents=True)
        with gzip.open(root / "documents" / split / "shard-00000.jsonl.gz", "wt") as f:
            for name, text in files.items():
                doc = {
                    "code": text,
                    "repo": repo,
                    "path": name,
                    "license": "MIT",
                    "language": "python",
                    "size": len(text),
                }
                f.write(json.dumps(doc) + "\n")
    (root / "stats.json").write_text("{}")
    return root


@pytest.fixture(scope="session")
def token_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The token-shard contract, tokenised with the tiny model's tokenizer."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    root = tmp_path_factory.mktemp("tokens")
    (root / "valid").mkdir()
    ids, offsets = [], [0]
    for text in list(SOURCES.values()) * 3:
        ids += tok.encode(text).ids + [eos]
        offsets.append(len(ids))
    np.asarray(ids, dtype=np.uint16).tofile(root / "valid" / "shard-00000.bin")
    np.save(root / "valid" / "shard-00000.idx.npy", np.asarray(offsets, dtype=np.int64))
    meta = {
        "format": "codecomplete-tokens-v1",
        "dtype": "uint16",
        "eos_id": eos,
        "vocab_size": tok.get_vocab_size(),
        "tokenizer": str(tiny_model_dir),
        "splits": {
            "valid": {
                "num_tokens": len(ids),
                "num_documents": len(offsets) - 1,
                "shards": ["shard-00000.bin"],
            }
        },
    }
    (root / "meta.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="session")
def problems_file(tmp_path_factory) -> Path:
    """Two HumanEval-format problems small enough for a tiny model's few tokens."""
    path = tmp_path_factory.mktemp("problems") / "problems.jsonl"
    problems = [
        {
            "task_id": "Tiny/0",
            "entry_point": "add",
            "prompt": "def add(a, b):\n",
            "canonical_solution": "    return a + b\n",
            "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
        },
        {
            "task_id": "Tiny/1",
            "entry_point": "neg",
            "prompt": "def neg(x):\n",
            "canonical_solution": "    return -x\n",
            "test": "def check(candidate):\n    assert candidate(4) == -4\n",
        },
    ]
    path.write_text("".join(json.dumps(p) + "\n" for p in problems))
    return path


class Oracle:
    """What the fake server knows: the held-out files (so it can answer any cut of them exactly),
    scripted answers per prompt, and every request it received."""

    def __init__(self):
        self.texts = list(SOURCES.values())
        self.answers: dict[str, list[str]] = {}
        self.requests: list[dict] = []
        self.reject_zero_max_tokens = False
        self.card = {"id": "fake-model", "object": "model"}
        self.lock = threading.Lock()

    def answer(self, body: dict) -> tuple[int, dict]:
        with self.lock:
            self.requests.append(body)
        prompt, n = body.get("prompt"), int(body.get("n") or 1)
        if isinstance(prompt, list):  # token ids: perplexity
            max_tokens = body.get("max_tokens", 16)
            if max_tokens == 0 and self.reject_zero_max_tokens:
                return 400, {
                    "error": {
                        "message": "max_tokens must be at least 1",
                        "type": "invalid_request_error",
                        "param": "max_tokens",
                        "code": None,
                    }
                }
            lps = [None] + [-1.0] * (len(prompt) - 1) + [-0.25] * max_tokens
            choice = {
                "text": "",
                "index": 0,
                "finish_reason": "length",
                "logprobs": {
                    "tokens": [str(t) for t in prompt] + ["x"] * max_tokens,
                    "token_logprobs": lps,
                    "top_logprobs": None,
                    "text_offset": [],
                },
            }
            return 200, self._response([choice], len(prompt))
        if prompt in self.answers:
            texts = [self.answers[prompt][j % len(self.answers[prompt])] for j in range(n)]
        elif body.get("suffix") is not None:
            suffix = body["suffix"]
            texts = [
                next(
                    t[len(prompt) : len(t) - len(suffix)]
                    for t in self.texts
                    if t.startswith(prompt) and t.endswith(suffix) and len(prompt) + len(suffix) <= len(t)
                )
            ] * n
        else:
            # The rest of the file: the client must cut it at its own stop strings too.
            texts = [next(t[len(prompt) :] for t in self.texts if t.startswith(prompt))[:200]] * n
        choices = [
            {"text": t, "index": j, "logprobs": None, "finish_reason": "stop"} for j, t in enumerate(texts)
        ]
        return 200, self._response(choices, len(prompt))

    @staticmethod
    def _response(choices, prompt_tokens):
        return {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": 1,
            "model": "fake-model",
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 0, "total_tokens": prompt_tokens},
        }


@pytest.fixture
def fake_server(free_port):
    oracle = Oracle()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            if self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [oracle.card]})
            else:
                self._send(
                    404, {"error": {"message": "not found", "type": "not_found", "param": None, "code": None}}
                )

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/completions":
                self._send(
                    404, {"error": {"message": "not found", "type": "not_found", "param": None, "code": None}}
                )
                return
            self._send(*oracle.answer(body))

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    oracle.url = f"http://127.0.0.1:{free_port}"
    yield oracle
    server.shutdown()
    server.server_close()

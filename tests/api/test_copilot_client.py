"""The real GitHub Copilot client against the real server, offline, with no stub (issue 13).

`@github/copilot-language-server` (the engine of copilot.vim, copilot.lua, JetBrains and VS Code)
is installed once from npm into ~/.cache/codecomplete/npm (CODECOMPLETE_NPM_CACHE overrides), then
run with our server as its only endpoint inside a loopback-only network namespace (`unshare -n`):
nothing either process does can leave the machine. tests/api/copilot_lsp.py does the driving.
Skips only where node/npm or the namespace is unavailable, and says which.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .sse_util import read_like_copilot

pytestmark = pytest.mark.slow

PACKAGE = "@github/copilot-language-server"
VERSION = "1.539.0"
ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "codecomplete-tiny-py"


def npm_cache() -> Path:
    return Path(os.environ.get("CODECOMPLETE_NPM_CACHE", Path.home() / ".cache" / "codecomplete" / "npm"))


@pytest.fixture(scope="module")
def language_server() -> Path:
    """The pinned package's entry point, installed on first use (the npm registry is allowed)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm are not installed: the Copilot language server needs them")
    prefix = npm_cache() / VERSION
    entry = prefix / "node_modules" / PACKAGE / "dist" / "language-server.js"
    if not entry.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), f"{PACKAGE}@{VERSION}"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, f"npm install {PACKAGE}@{VERSION} failed:\n{r.stdout}\n{r.stderr}"
    return entry


@pytest.fixture(scope="module")
def namespace() -> list[str]:
    """The command prefix that runs a shell in a new network namespace with only loopback up."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare/ip are not installed: no loopback-only network namespace to run Copilot in")
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace (`unshare -n` needs root): {probe.stderr.strip()}")
    return ["unshare", "-n", "sh", "-c"]


def test_real_copilot_client_offline_shows_our_completion(language_server, namespace, tmp_path):
    if not (MODEL / "config.json").exists():
        pytest.skip(f"the bundled model {MODEL} is missing")
    out = tmp_path / "copilot.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env = {k: v for k, v in env.items() if not k.startswith("CODECOMPLETE_")}
    driver = Path(__file__).with_name("copilot_lsp.py")
    script = f"ip link set lo up && exec {sys.executable} {driver} {language_server} {MODEL} {out}"
    r = subprocess.run([*namespace, script], env=env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0 and out.exists(), f"the driver failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    seen = json.loads(out.read_text())
    exchanges = seen["exchanges"]
    by_path = {}
    for e in exchanges:
        by_path.setdefault((e["method"], e["path"]), []).append(e)

    # Sign-in without GitHub: the token (with the header the client insists on) and its endpoints.
    [token] = by_path[("GET", "/copilot_internal/v2/token")]
    assert token["status"] == 200 and token["response_headers"]["x-github-request-id"]
    assert set(json.loads(token["body"])["endpoints"].values()) == {seen["base"]}
    assert all(e["status"] == 200 for e in by_path[("GET", "/telemetry")])  # the experiment config

    # The completion: Copilot's own request, streamed by us, shown by Copilot as we streamed it.
    posts = [e for e in exchanges if e["method"] == "POST" and e["path"].endswith("/completions")]
    # After an accept Copilot asks ahead for the next completion (x-copilot-speculative: true); the
    # driver exits right after accepting, so that request may be abandoned mid-stream: 499 (the
    # client went away) is then the right record, and any other status is not.
    ahead = [e for e in posts if e["headers"].get("x-copilot-speculative") == "true"]
    assert all(e["status"] in (200, 499) for e in ahead), [e["status"] for e in ahead]
    completions = [e for e in posts if e not in ahead]
    assert completions and all(e["status"] == 200 for e in completions)
    first = json.loads(completions[0]["request"])
    assert first["suffix"] == "" and first["stream"] is True  # nothing after the cursor: left-to-right
    streamed = {
        c["text"].rstrip() for e in completions for c in read_like_copilot(e["body"].encode()).values()
    }
    assert seen["items"], f"Copilot showed nothing; its log:\n{seen['stderr']}"
    shown = seen["items"][0]["insertText"].rstrip()
    assert shown.strip() and shown in streamed, (shown, streamed)

    # Its telemetry reached us: one shown and one accepted event for Python in /metrics.
    metrics = seen["metrics"]
    assert 'codecomplete_copilot_events_total{event="shown",language="python"} 1.0' in metrics
    assert 'codecomplete_copilot_events_total{event="accepted",language="python"} 1.0' in metrics
    assert 'codecomplete_copilot_acceptance_rate{language="python"} 1.0' in metrics

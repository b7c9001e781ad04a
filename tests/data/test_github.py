"""The GitHub search source against a fake GitHub API on loopback: pagination, creation-date windows
past the 1000-result cap, a 403 rate limit with its reset header, token rotation, resume from the
cursor file."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import urllib.error
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from codecomplete.data.config import SourceConfig
from codecomplete.data.sources.github import GitHubSearch, RateLimited

START = dt.date(2020, 1, 1)
REPOS = [
    {
        "full_name": f"owner{i % 37}/repo{i}",
        "clone_url": f"https://example.invalid/owner{i % 37}/repo{i}.git",
        "stargazers_count": 100 + (i * 7919) % 5000,
        "license": {"spdx_id": "MIT" if i % 3 else "Apache-2.0"},
        "size": 10 + i % 400,
        "language": "Python",
        "created": (START + dt.timedelta(days=i % 366)).isoformat(),
    }
    for i in range(2600)
]


class FakeGitHub:
    """Search semantics that matter here: `created:A..B` filter, 1000-result cap, per-token limits."""

    def __init__(self, limited_tokens=(), fail_after=None, reset_at=4_000_000_000, repos=REPOS):
        self.repos = repos
        self.log: list[tuple[str | None, str, int, int]] = []  # (token, q, page, status)
        self.limited = set(limited_tokens)
        self.fail_after = fail_after
        self.reset_at = reset_at
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                fake.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, h):
        qs = urllib.parse.parse_qs(urllib.parse.urlparse(h.path).query)
        q, page, per_page = qs["q"][0], int(qs["page"][0]), int(qs["per_page"][0])
        auth = h.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") or None

        def reply(status, body, headers=()):
            self.log.append((token, q, page, status))
            data = json.dumps(body).encode()
            h.send_response(status)
            for k, v in headers:
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        if self.fail_after is not None and len(self.log) >= self.fail_after:
            return reply(500, {"message": "server error"})
        if token in self.limited:
            self.limited.discard(token)  # limited once, then its quota "resets"
            return reply(403, {"message": "API rate limit exceeded"},
                         [("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", str(self.reset_at))])  # fmt: skip
        a, b = re.search(r"created:(\S+)\.\.(\S+)", q).groups()
        hits = sorted((r for r in self.repos if a <= r["created"] <= b), key=lambda r: -r["stargazers_count"])
        if page * per_page > 1000:
            return reply(422, {"message": "Only the first 1000 search results are available"})
        items = hits[(page - 1) * per_page : page * per_page]
        reply(200, {"total_count": len(hits), "items": items}, [("X-RateLimit-Remaining", "29")])

    def close(self):
        self.server.shutdown()


@pytest.fixture
def cfg():
    def make(url, **kw):
        return SourceConfig(
            kind="github", api_url=url, created_from="2020-01-01", created_to="2020-12-31", **kw
        )

    return make


def test_windows_past_the_cap_and_pagination(cfg, tmp_path):
    fake = FakeGitHub()
    try:
        repos = GitHubSearch(cfg(fake.url), ["t1"], tmp_path / "cursor.json").crawl()
    finally:
        fake.close()
    assert {r["name"] for r in repos} == {r["full_name"] for r in REPOS}  # 2600 > the 1000 cap
    assert all(status == 200 for *_, status in fake.log)  # never asked past the cap
    assert max(page for _, _, page, _ in fake.log) >= 2  # windows were paged through
    first = next(r for r in repos if r["name"] == "owner0/repo0")
    assert first["license"] == "Apache-2.0" and first["url"].endswith("repo0.git") and first["stars"] == 100
    q = fake.log[0][1]
    for qualifier in (
        "language:Python",
        "stars:>=100",
        "fork:false",
        "size:<=50000",
        "created:2020-01-01..2020-12-31",
    ):
        assert qualifier in q


def test_rate_limited_token_rests_and_the_next_one_is_used(cfg, tmp_path):
    fake = FakeGitHub(limited_tokens={"tok-a"})
    slept = []
    try:
        search = GitHubSearch(cfg(fake.url), ["tok-a", "tok-b"], tmp_path / "cursor.json", sleep=slept.append,
                              clock=lambda: 1_000_000.0)  # fmt: skip
        repos = search.crawl()
    finally:
        fake.close()
    assert len(repos) == len(REPOS)
    assert fake.log[0][0] == "tok-a" and fake.log[0][3] == 403
    assert {tok for tok, *_ in fake.log[1:]} == {"tok-b"}  # tok-a rests until its reset
    assert slept == []  # another token was free: no waiting


def test_all_tokens_limited_sleeps_until_the_reset(cfg, tmp_path):
    now = [1000.0]
    fake = FakeGitHub(limited_tokens={"tok-a"}, reset_at=1060)
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    try:
        repos = GitHubSearch(
            cfg(fake.url), ["tok-a"], tmp_path / "c.json", sleep=sleep, clock=lambda: now[0]
        ).crawl()
    finally:
        fake.close()
    assert len(repos) == len(REPOS) and slept and 60 <= sum(slept) <= 62
    with pytest.raises(RateLimited):  # a reset further away than max_wait_s: give up, cursor kept
        fake = FakeGitHub(limited_tokens={"tok-a"}, reset_at=10**9)
        try:
            GitHubSearch(cfg(fake.url, max_wait_s=5), ["tok-a"], tmp_path / "d.json", sleep=sleep,
                         clock=lambda: now[0]).crawl()  # fmt: skip
        finally:
            fake.close()


def test_interrupted_crawl_resumes_from_the_cursor(cfg, tmp_path):
    cursor = tmp_path / "cursor.json"
    fake = FakeGitHub(fail_after=9)
    try:
        with pytest.raises(urllib.error.HTTPError):
            GitHubSearch(cfg(fake.url), ["t"], cursor).crawl()
    finally:
        fake.close()
    done_before = {(q, page) for _, q, page, status in fake.log if status == 200}
    assert cursor.exists() and len(done_before) == 9
    fake2 = FakeGitHub()
    try:
        repos = GitHubSearch(cfg(fake2.url), ["t"], cursor).crawl()
    finally:
        fake2.close()
    assert {r["name"] for r in repos} == {r["full_name"] for r in REPOS}
    again = {(q, page) for _, q, page, _ in fake2.log}
    assert not again & done_before  # no page fetched twice


def test_tokens_never_reach_the_run_logs(tmp_path):
    """datatrove saves each step's attributes in executor.json; the tokens must not be there."""
    from codecomplete.data.config import CurateConfig
    from codecomplete.data.pipeline import build_stages

    cfg = CurateConfig.from_dict({"name": "g", "out": str(tmp_path), "sources": [{"kind": "github"}]})
    discover = build_stages(cfg, tokens_env=["ghp_supersecret1", "ghp_supersecret2"])[0][1]
    discover.logging_dir.makedirs("", exist_ok=True)
    discover.save_executor_as_json()
    saved = (tmp_path / "logs" / "discover" / "executor.json").read_text()
    assert "supersecret" not in saved and "2 token(s)" in saved


def test_github_recipe_end_to_end_clones_and_curates(corpus, tmp_path):
    """discover (search) -> clone -> curate, with stars and licence taken from the API."""
    from codecomplete.data.config import CurateConfig
    from codecomplete.data.document import iter_records
    from codecomplete.data.pipeline import run_curate

    def repo(name, spdx, stars):
        return {"full_name": f"acme/{name}", "clone_url": corpus.repos[name].as_uri(), "stargazers_count": stars,
                "license": {"spdx_id": spdx}, "size": 100, "language": "Python", "created": "2020-03-01"}  # fmt: skip

    fake = FakeGitHub(repos=[repo("mit-lib", "MIT", 500), repo("gpl-app", "GPL-3.0", 900)])
    try:
        raw = {
            "name": "gh", "out": str(tmp_path / "out"), "progress": False, "executor": {"tasks": 1},
            "sources": [{"kind": "github", "api_url": fake.url, "created_from": "2020-01-01", "created_to": "2020-12-31"}],
        }  # fmt: skip
        stats = run_curate(CurateConfig.from_dict(raw), tokens_env=["t"])
    finally:
        fake.close()
    docs = list(iter_records(tmp_path / "out", None))
    assert docs and {d["repo"] for d in docs} == {"acme/mit-lib"}
    assert all(d["stars"] == 500 and d["license"] == "MIT" for d in docs)
    assert stats["dropped"]["license_non_permissive"]["docs"] == 20  # the GPL repo, licence from the API
    assert (tmp_path / "out" / "work" / "github-cursor.json").exists()

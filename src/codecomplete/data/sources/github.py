"""GitHub search: repositories matching the classic filters, past the 1000-result cap, resumable.

The search API returns at most 1000 results per query, so the creation-date range is cut into
windows, and a window whose `total_count` exceeds 1000 is halved until it fits (or is one day).
Each page fetched is recorded in a cursor file (written atomically), so an interrupted crawl
resumes at the next page. With several tokens, a token that hits its rate limit (403/429 with
`X-RateLimit-Remaining: 0`) rests until its `X-RateLimit-Reset` while the next one is used; when
all rest, the crawl sleeps until the first reset.

REST reference: https://docs.github.com/en/rest/search/search#search-repositories
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codecomplete.data.config import SourceConfig
from codecomplete.data.document import write_json_atomic

PER_PAGE = 100
RESULT_CAP = 1000


class RateLimited(RuntimeError):
    pass


def build_query(cfg: SourceConfig, created: tuple[str, str]) -> str:
    q = [f"language:{cfg.language}", f"stars:>={cfg.min_stars}"]
    q.append("fork:true" if cfg.include_forks else "fork:false")
    if cfg.max_size_kb is not None:
        q.append(f"size:<={cfg.max_size_kb}")
    if cfg.pushed_after:
        q.append(f"pushed:>{cfg.pushed_after}")
    q += [f"license:{lic}" for lic in cfg.licenses]
    q.append(f"created:{created[0]}..{created[1]}")
    return " ".join(q)


def _day(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def split_window(window: tuple[str, str]) -> list[tuple[str, str]]:
    a, b = _day(window[0]), _day(window[1])
    mid = a + (b - a) // 2
    return [(a.isoformat(), mid.isoformat()), ((mid + dt.timedelta(days=1)).isoformat(), b.isoformat())]


class TokenPool:
    """Tokens in turn; a rate-limited token rests until its reset time."""

    def __init__(self, tokens: list[str], clock: Callable[[], float]):
        self.tokens: list[str | None] = list(tokens) or [None]
        self.resets = [0.0] * len(self.tokens)
        self.current = 0
        self.clock = clock

    def pick(self) -> int | None:
        now = self.clock()
        for k in range(len(self.tokens)):
            i = (self.current + k) % len(self.tokens)
            if self.resets[i] <= now:
                self.current = i
                return i
        return None

    def rest(self, i: int, until: float) -> None:
        self.resets[i] = until

    def next_reset(self) -> float:
        return min(self.resets)


class GitHubSearch:
    def __init__(
        self,
        cfg: SourceConfig,
        tokens: list[str],
        cursor_path: str | Path,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] = lambda msg: None,
    ):
        self.cfg = cfg
        self.pool = TokenPool(tokens, clock)
        self.cursor_path = Path(cursor_path)
        self.sleep = sleep
        self.clock = clock
        self.log = log
        self.requests = 0

    # --- HTTP ---------------------------------------------------------------------------------

    def _get(self, params: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.cfg.api_url.rstrip('/')}/search/repositories?{urllib.parse.urlencode(params)}"
        waited = 0.0
        while True:
            i = self.pool.pick()
            if i is None:
                wait = max(1.0, self.pool.next_reset() - self.clock() + 1.0)
                if waited + wait > self.cfg.max_wait_s:
                    raise RateLimited(f"every token is rate-limited; next reset in {wait:.0f}s")
                self.log(f"github: all tokens rate-limited, sleeping {wait:.0f}s")
                self.sleep(wait)
                waited += wait
                continue
            headers = {"Accept": "application/vnd.github+json", "User-Agent": "codecomplete-curate"}
            token = self.pool.tokens[i]
            if token:
                headers["Authorization"] = f"Bearer {token}"
            self.requests += 1
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as e:
                if e.code in (403, 429):
                    remaining = e.headers.get("X-RateLimit-Remaining")
                    reset = e.headers.get("X-RateLimit-Reset")
                    retry_after = e.headers.get("Retry-After")
                    if remaining == "0" and reset:
                        self.log(f"github: token #{i} rate-limited until {reset}")
                        self.pool.rest(i, float(reset))
                        continue
                    if retry_after:  # a secondary limit: the same token waits
                        self.pool.rest(i, self.clock() + float(retry_after))
                        continue
                raise

    # --- cursor -------------------------------------------------------------------------------

    def _load_cursor(self, query_key: str) -> dict[str, Any]:
        if self.cursor_path.exists():
            cursor = json.loads(self.cursor_path.read_text())
            if cursor.get("query_key") == query_key:
                return cursor
            raise ValueError(f"{self.cursor_path} belongs to another search; remove it to start over")
        created_to = self.cfg.created_to or dt.date.today().isoformat()
        return {
            "query_key": query_key,
            "pending": [[self.cfg.created_from, created_to]],
            "page": 1,
            "repos": {},
        }

    def crawl(self) -> list[dict[str, Any]]:
        query_key = build_query(self.cfg, ("*", "*"))
        cursor = self._load_cursor(query_key)
        repos: dict[str, dict[str, Any]] = cursor["repos"]
        while cursor["pending"] and not self._enough(repos):
            window = tuple(cursor["pending"][0])
            page = cursor["page"]
            params = {"q": build_query(self.cfg, window), "sort": "stars", "order": "desc"}
            data = self._get({**params, "per_page": PER_PAGE, "page": page})
            total = int(data.get("total_count", 0))
            if page == 1 and total > RESULT_CAP and window[0] != window[1]:
                cursor["pending"][0:1] = [list(w) for w in split_window(window)]
                self.log(f"github: {window} has {total} results, splitting")
                write_json_atomic(self.cursor_path, cursor)
                continue
            for item in data.get("items", []):
                repos.setdefault(item["full_name"], self._repo(item))
            items = len(data.get("items", []))
            if items < PER_PAGE or page * PER_PAGE >= min(total, RESULT_CAP):
                cursor["pending"].pop(0)
                cursor["page"] = 1
            else:
                cursor["page"] = page + 1
            write_json_atomic(self.cursor_path, cursor)
        out = sorted(repos.values(), key=lambda r: (-r["stars"], r["name"]))
        return out[: self.cfg.max_repos] if self.cfg.max_repos else out

    def _enough(self, repos: dict) -> bool:
        return self.cfg.max_repos is not None and len(repos) >= self.cfg.max_repos

    @staticmethod
    def _repo(item: dict[str, Any]) -> dict[str, Any]:
        lic = (item.get("license") or {}).get("spdx_id")
        return {
            "name": item["full_name"],
            "url": item.get("clone_url") or item.get("html_url"),
            "ref": item.get("default_branch"),
            "license": lic,
            "stars": int(item.get("stargazers_count", 0)),
            "size_kb": int(item.get("size", 0)),
            "language": item.get("language"),
        }

"""The browser playground at `/`: static files shipped in the package (no build step, no network),
and the route where it reports suggestions shown and accepted (the acceptance-rate metric).

The page talks to the server only through the public API (/v1/completions with `"debug": true`,
/v1/models, /metrics); docs/api.md, Playground, describes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict
from starlette.responses import FileResponse, Response

from codecomplete.api.body import JSONBodyRoute
from codecomplete.api.deps import require_api_key
from codecomplete.api.errors import APIError, error_responses

STATIC = Path(__file__).resolve().parent / "static"
FILES = {"index.html", "playground.js", "playground.css"}

pages = APIRouter()
events = APIRouter(dependencies=[Depends(require_api_key)], route_class=JSONBodyRoute)


@pages.get("/", include_in_schema=False)
async def index() -> Response:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})


@pages.get("/playground/{name}", include_in_schema=False)
async def static_file(name: str) -> Response:
    if name not in FILES:  # a fixed list: no path from the URL ever reaches the filesystem
        raise APIError(404, f"no playground file {name!r}", code="not_found")
    return FileResponse(STATIC / name, headers={"cache-control": "no-cache"})


class SuggestionEvent(BaseModel):
    """A completion the playground showed as ghost text (`view`), or one the user accepted with
    Tab (`select`): Tabby's event names, so one metric holds every editor's acceptance."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{"event": "select"}]})

    event: Literal["view", "select"]


@events.post("/playground/events", status_code=204, responses=error_responses(400, 401, 413, 415))
async def suggestion_event(event: SuggestionEvent, raw: Request) -> Response:
    """Counted in `codecomplete_client_events_total{client="playground",event}`."""
    raw.app.state.metrics.client_events.labels(client="playground", event=event.event).inc()
    return Response(status_code=204)

"""/metrics has one name per quantity, named the Prometheus way, each documented once in
docs/api.md; the Grafana dashboard and the Prometheus config in docker/ use only names that exist.

The names come from a scrape of an app over the real engine (a tiny random model, in-process),
so engine numbers added later show up here and must be documented.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from codecomplete.api import build_app
from codecomplete.api.metrics import ENGINE_METRICS

from .conftest import make_client, settings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "codecomplete.json"
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


@pytest.fixture(scope="module")
def scrape(tiny_model_dir) -> str:
    from codecomplete.engine import EngineConfig, build_engine

    engine = build_engine(EngineConfig(model=str(tiny_model_dir), device="cpu", num_threads=1))
    with TestClient(build_app(settings(), engine), raise_server_exceptions=False) as c:
        assert c.post("/v1/completions", json={"prompt": "def f(", "max_tokens": 2}).status_code == 200
        assert c.post("/playground/events", json={"event": "view"}).status_code == 204
        text = c.get("/metrics").text
    return text


def families(text: str) -> dict[str, str]:
    """`# TYPE name kind` lines: name -> kind (asserting none repeats)."""
    out: dict[str, str] = {}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        assert name not in out, f"{name} exported twice"
        out[name] = kind
    return out


def series_names(text: str) -> set[str]:
    return {m for m in re.findall(r"^([a-zA-Z_:][\w:]*)(?:\{|\s)", text, re.M)}


def documented() -> list[str]:
    """Metric names in the first column of docs/api.md's metrics table."""
    doc = (ROOT / "docs" / "api.md").read_text()
    section = doc.split("### Metrics", 1)[1].split("\n## ", 1)[0]
    names = []
    for line in section.splitlines():
        if line.startswith("| `codecomplete_"):
            names += re.findall(r"`(codecomplete_\w+)", line.split("|")[1])
    return names


def test_names_follow_prometheus_conventions(scrape):
    fams = families(scrape)
    assert fams, scrape[:500]
    for name, kind in fams.items():
        assert name.startswith("codecomplete_"), name
        assert (kind == "counter") == name.endswith("_total"), (
            f"{name} ({kind}): counters, and only they, end in _total"
        )
        if kind == "histogram":
            assert name.endswith("_seconds"), f"{name}: the unit in the name"
    assert not any(n.endswith("_created") for n in series_names(scrape)), "no _created series"


def test_each_quantity_has_one_name(scrape):
    names = series_names(scrape)
    # What the edge measures is not exported again from the engine under a second name.
    for key, mapped in ENGINE_METRICS.items():
        assert "codecomplete_engine_" + key not in names
        if mapped is not None:
            assert mapped[0] in names, mapped[0]
    for old in (
        "codecomplete_running_batch_size",
        "codecomplete_engine_running",
        "codecomplete_engine_running_requests",
        "codecomplete_requests_cancelled_total",
        "codecomplete_engine_requests_cancelled_total",
        "codecomplete_engine_tokens_generated_total",
        "codecomplete_engine_prefix_cache_hit_rate",
    ):
        assert old not in names, old
    assert re.search(r'^codecomplete_completions_total\{outcome="ok"\} 1\.0$', scrape, re.M)
    assert re.search(
        r'^codecomplete_client_events_total\{client="playground",event="view"\} 1\.0$', scrape, re.M
    )


def test_every_name_is_documented_once(scrape):
    names = documented()
    assert len(names) == len(set(names)), (
        f"documented twice: {sorted(n for n in names if names.count(n) > 1)}"
    )
    assert set(names) == set(families(scrape)), (
        f"exported but not in docs/api.md: {sorted(set(families(scrape)) - set(names))}; "
        f"documented but not exported: {sorted(set(names) - set(families(scrape)))}"
    )


def test_cancellations_are_completions_with_outcome_cancelled():
    with make_client() as c:
        c.app.state.metrics.cancelled.inc()
        text = c.get("/metrics").text
    assert 'codecomplete_completions_total{outcome="cancelled"} 1.0' in text


def test_dashboard_queries_use_existing_names(scrape):
    dash = json.loads(DASHBOARD.read_text())
    fams = families(scrape)
    exprs = [t["expr"] for panel in dash["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 10
    used = {name for e in exprs for name in re.findall(r"\bcodecomplete_\w+", e)}
    for name in used:
        base = next((name[: -len(s)] for s in HISTOGRAM_SERIES if name.endswith(s)), name)
        if base != name:
            assert fams.get(base) == "histogram", f"dashboard uses {name}, and {base} is not a histogram"
        else:
            assert name in fams, f"the dashboard queries {name}, which /metrics does not export"
    # The dashboard shows what the issue asks for: queue, batch, throughput, acceptance.
    for needed in (
        "codecomplete_requests_waiting",
        "codecomplete_batch_sequences",
        "codecomplete_generated_tokens_total",
        "codecomplete_client_events_total",
    ):
        assert needed in used, needed


def test_prometheus_config_scrapes_metrics():
    config = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"]
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    assert {"prometheus", "grafana"} <= set(compose["services"])

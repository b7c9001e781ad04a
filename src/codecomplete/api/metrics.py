"""Prometheus metrics, one registry per app (so tests and several apps in one process never clash).

One name per quantity, Prometheus naming: the `codecomplete_` prefix, the unit in the name
(`_seconds`, `_bytes`, `_tokens`), `_total` on counters (docs/api.md lists every name; the Grafana
dashboard in docker/ uses them). Request-level numbers are measured here, at the edge where the
client sees them; the engine's gauges and counters (`engine.metrics()`) are read at scrape time:
the well-known ones under the names in `ENGINE_METRICS`, those the edge already counts are not
exported twice, and any other engine number as `codecomplete_engine_<key>`.

New metrics (other routes, other backends) follow the same convention and go into docs/api.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from codecomplete.engine.client import EngineClient

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latencies of a code model on CPU or GPU: from a few ms per token to tens of seconds per prompt.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# engine.metrics() key -> (exported name, help), or None: the quantity is measured at the edge
# (ServerMetrics below) or derived in PromQL, and exporting it again would give it a second name.
# Names ending in _total are counters, the rest gauges.
ENGINE_METRICS: dict[str, tuple[str, str] | None] = {
    "queue_depth": ("codecomplete_requests_waiting", "Requests waiting for a batch slot."),
    "running_requests": ("codecomplete_requests_running", "Requests in the running batch."),
    "running": (
        "codecomplete_batch_sequences",
        "Sequences in the running batch (a request with n choices is n sequences).",
    ),
    "prefix_cache_hits_total": (
        "codecomplete_prefix_cache_hits_total",
        "Prompts that reused a cached prefix.",
    ),
    "prefix_cache_lookups_total": (
        "codecomplete_prefix_cache_lookups_total",
        "Prompts looked up in the prefix cache.",
    ),
    "prefix_cache_tokens_reused_total": (
        "codecomplete_prefix_cache_reused_tokens_total",
        "Prompt tokens taken from the prefix cache instead of being computed.",
    ),
    "prefix_cache_entries": ("codecomplete_prefix_cache_entries", "Prefixes held in the cache."),
    "prefix_cache_bytes": ("codecomplete_prefix_cache_bytes", "Memory held by the prefix cache."),
    "spec_draft_tokens_total": (
        "codecomplete_spec_draft_tokens_total",
        "Tokens proposed by prompt lookup and checked in a speculative step.",
    ),
    "spec_accepted_tokens_total": (
        "codecomplete_spec_accepted_tokens_total",
        "Drafted tokens the model agreed with (kept without a step of their own).",
    ),
    # Measured at the edge: codecomplete_completions_total{outcome="cancelled"},
    # codecomplete_generated_tokens_total, codecomplete_prompt_tokens_total.
    "requests_cancelled_total": None,
    "tokens_generated_total": None,
    "prompt_tokens_total": None,
    # hits / lookups: rate(codecomplete_prefix_cache_hits_total) / rate(..._lookups_total).
    "prefix_cache_hit_rate": None,
}


def engine_metric_name(key: str) -> str:
    return "codecomplete_engine_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


class _EngineCollector(Collector):
    """Reads engine.metrics() and engine.health() at scrape time."""

    def __init__(self, engine: EngineClient):
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        values = dict(self.engine.metrics() or {})
        health = self.engine.health()
        # Backends without their own numbers still report the two every health check has.
        values.setdefault("queue_depth", health.queue_depth)
        values.setdefault("running", health.running)
        values.setdefault("running_requests", health.running)
        yield GaugeMetricFamily(
            "codecomplete_engine_up",
            "1 when the engine is loaded and its loop alive.",
            value=float(health.ok),
        )
        for key, value in sorted(values.items()):
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if key in ENGINE_METRICS:
                known = ENGINE_METRICS[key]
                if known is None:
                    continue
                name, doc = known
            else:
                name, doc = engine_metric_name(key), f"engine.metrics()['{key}']"
            if name.endswith("_total"):
                yield CounterMetricFamily(name[: -len("_total")], doc, value=float(value))
            else:
                yield GaugeMetricFamily(name, doc, value=float(value))


class CopilotEvents(Collector):
    """Copilot's inline-completion telemetry (api/copilot): events by language, and the acceptance
    rate (accepted / shown) per language and over all of them (language="all")."""

    MAX_LANGUAGES = 64  # label values come from clients: bounded, the rest count as "other"

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self._languages: set[str] = set()

    def record(self, event: str, language: str) -> None:
        if language not in self._languages:
            if len(self._languages) >= self.MAX_LANGUAGES:
                language = "other"
            self._languages.add(language)
        self.counts[(event, language)] = self.counts.get((event, language), 0) + 1

    def acceptance_rate(self, language: str | None = None) -> float | None:
        def total(event: str) -> int:
            return sum(v for (e, lang), v in self.counts.items() if e == event and language in (None, lang))

        shown = total("shown")
        return total("accepted") / shown if shown else None

    def collect(self) -> Iterable[Metric]:
        events = CounterMetricFamily(
            "codecomplete_copilot_events",
            "Copilot inline completions shown, accepted and rejected in the editor (its telemetry).",
            labels=["event", "language"],
        )
        for (event, language), value in sorted(self.counts.items()):
            events.add_metric([event, language], float(value))
        yield events
        rate = GaugeMetricFamily(
            "codecomplete_copilot_acceptance_rate",
            "Copilot inline completions accepted / shown, by language (all: every language).",
            labels=["language"],
        )
        for language in [*sorted(self._languages), "all"]:
            value = self.acceptance_rate(None if language == "all" else language)
            if value is not None:
                rate.add_metric([language], value)
        yield rate


class ServerMetrics:
    def __init__(self, engine: EngineClient):
        # No `<name>_created` series next to every counter: a second name per quantity that no
        # dashboard reads (prometheus_client's switch is process-wide; this process is the server).
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=False)  # no engine call before start()
        r = self.registry
        # prometheus_client adds `_total` to counter names.
        self.requests = Counter(
            "codecomplete_http_requests",
            "HTTP requests by route template, method and status (499: the client went away).",
            ["route", "method", "status"],
            registry=r,
        )
        self.ttft = Histogram(
            "codecomplete_time_to_first_token_seconds",
            "From the request's arrival to its first generated text.",
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "codecomplete_inter_token_latency_seconds",
            "Between successive pieces of generated text of one request.",
            buckets=ITL_BUCKETS,
            registry=r,
        )
        self.tokens_generated = Counter(
            "codecomplete_generated_tokens", "Tokens generated and sent to clients.", registry=r
        )
        self.prompt_tokens = Counter("codecomplete_prompt_tokens", "Prompt tokens processed.", registry=r)
        self.completions = Counter(
            "codecomplete_completions",
            "Finished completion requests (every completion route) by outcome: ok, error, cancelled "
            "(the client went away before the answer was complete; generation aborted).",
            ["outcome"],
            registry=r,
        )
        self.superseded = Counter(
            "codecomplete_requests_superseded",
            "Requests cancelled because a newer one from the same editor session arrived.",
            ["channel"],
            registry=r,
        )
        self.copilot = CopilotEvents()
        r.register(self.copilot)
        # One counter for what editors report about the completions they got (the same name and
        # vocabulary as Tabby's /v1/events): `view` shown, `select` accepted, `select_line` a line
        # of it accepted, `dismiss`. Acceptance rate = select / view.
        self.client_events = Counter(
            "codecomplete_client_events",
            "Telemetry events editors report about completions: view, select, select_line, dismiss.",
            ["client", "event"],
            registry=r,
        )
        # Every known label value from the start: a rate() over a series that appears only at its
        # first increment misses that increment.
        for outcome in ("ok", "error", "cancelled"):
            self.completions.labels(outcome=outcome)
        for event in ("view", "select"):
            self.client_events.labels(client="playground", event=event)
        r.register(_EngineCollector(engine))

    @property
    def cancelled(self) -> Counter:
        """Cancellations are completions with outcome "cancelled" (one name for the quantity)."""
        return self.completions.labels(outcome="cancelled")

    def render(self) -> bytes:
        return generate_latest(self.registry)

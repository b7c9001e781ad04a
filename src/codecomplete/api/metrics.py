"""Prometheus metrics, one registry per app (so tests and several apps in one process never clash).

Request-level numbers are measured here, at the edge where the client sees them; the engine's own
gauges and counters (`engine.metrics()`) are read at scrape time and exported as
`codecomplete_engine_<name>` (the well-known ones also under their own names below).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from codecomplete.engine.client import EngineClient

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latencies of a code model on CPU or GPU: from a few ms per token to tens of seconds per prompt.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _EngineCollector(Collector):
    """Reads engine.metrics() at scrape time."""

    # engine key -> (exported name, help); everything else is exported as codecomplete_engine_<key>.
    WELL_KNOWN = {
        "queue_depth": ("codecomplete_queue_depth", "Requests waiting for a batch slot."),
        "running": ("codecomplete_running_batch_size", "Sequences in the running batch."),
    }

    def __init__(self, engine: EngineClient):
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        values = dict(self.engine.metrics() or {})
        health = self.engine.health()
        values.setdefault("queue_depth", health.queue_depth)
        values.setdefault("running", health.running)
        yield GaugeMetricFamily(
            "codecomplete_engine_up",
            "1 when the engine is loaded and its loop alive.",
            value=float(health.ok),
        )
        for key, (name, doc) in self.WELL_KNOWN.items():
            yield GaugeMetricFamily(name, doc, value=float(values[key]))
        for key, value in sorted(values.items()):
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            name = "codecomplete_engine_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)
            if key.endswith("_total"):
                yield CounterMetricFamily(name[: -len("_total")], f"engine counter {key}", value=float(value))
            else:
                yield GaugeMetricFamily(name, f"engine gauge {key}", value=float(value))


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
        self.registry = CollectorRegistry(auto_describe=False)  # no engine call before start()
        r = self.registry
        self.requests = Counter(
            "codecomplete_http_requests",
            "HTTP requests by route and status.",
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
            "codecomplete_tokens_generated", "Tokens generated and sent to clients.", registry=r
        )
        self.prompt_tokens = Counter("codecomplete_prompt_tokens", "Prompt tokens processed.", registry=r)
        self.completions = Counter(
            "codecomplete_completions", "Finished completion requests by outcome.", ["outcome"], registry=r
        )
        self.cancelled = Counter(
            "codecomplete_requests_cancelled",
            "Requests whose client went away before the answer was complete (generation aborted).",
            registry=r,
        )
        self.client_events = Counter(
            "codecomplete_client_events",
            "Telemetry events editors report about completions (Tabby: view, select, select_line, dismiss).",
            ["client", "event"],
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
        r.register(_EngineCollector(engine))

    def render(self) -> bytes:
        return generate_latest(self.registry)

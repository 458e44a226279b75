"""The classifier service's lag and throughput, read from its Prometheus `/metrics` endpoint."""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True, slots=True)
class Sample:
    """One scrape: totals of the counters the overview shows, and when it was taken (monotonic seconds)."""

    at: float
    events_in: float
    decisions: float
    lag: float


@dataclass(frozen=True, slots=True)
class ServiceStats:
    """What the overview shows of the service; `error` says why a scrape failed."""

    url: str
    lag: float | None = None
    events_per_s: float | None = None
    decisions_per_s: float | None = None
    error: str | None = None


def parse_sample(text: str, at: float) -> Sample:
    """Totals of `multichannel_events_in_total`, `multichannel_decisions_total` and `multichannel_consumer_lag`."""
    events, decisions, lag = "multichannel_events_in", "multichannel_decisions", "multichannel_consumer_lag"
    totals = dict.fromkeys((events, decisions, lag), 0.0)
    for family in text_string_to_metric_families(text):
        if family.name in totals:
            totals[family.name] += sum(
                s.value for s in family.samples if s.name.endswith("_total") or s.name == family.name
            )
    return Sample(
        at, totals["multichannel_events_in"], totals["multichannel_decisions"], totals["multichannel_consumer_lag"]
    )


class MetricsScraper:
    """Scrapes the service's /metrics; rates come from the last two scrapes."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._last: Sample | None = None
        self.stats = ServiceStats(url, error="not read yet")

    def scrape(self) -> ServiceStats:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as resp:  # noqa: S310 - a configured URL
                text = resp.read().decode("utf-8", "replace")
            sample = parse_sample(text, time.monotonic())
        except (OSError, ValueError) as exc:
            self.stats = ServiceStats(self.url, error=f"{type(exc).__name__}: {exc}")
            return self.stats
        last, self._last = self._last, sample
        events_rate = decisions_rate = None
        if last is not None and sample.at > last.at:
            elapsed = sample.at - last.at
            events_rate = max(0.0, sample.events_in - last.events_in) / elapsed
            decisions_rate = max(0.0, sample.decisions - last.decisions) / elapsed
        self.stats = ServiceStats(self.url, sample.lag, events_rate, decisions_rate)
        return self.stats

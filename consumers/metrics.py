"""Prometheus metrics of the classifier service and its /metrics, /healthz, /readyz endpoints.

Counters move only when a batch's transaction has committed, so that an aborted and retried
batch is not counted twice: the service tallies a batch in a `BatchTally` and publishes it
after the commit.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import Counter as PromCounter


class ServiceMetrics:
    """The service's metric families, in their own registry (one per service instance)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._largest = 0
        r = self.registry
        self.events_in = PromCounter(
            "multichannel_events_in",
            "Input events by topic kind and event type.",
            ["source", "event_type"],
            registry=r,
        )
        self.outcomes = PromCounter(
            "multichannel_event_outcomes",
            "What became of each input event: applied, duplicate or dead_letter.",
            ["outcome"],
            registry=r,
        )
        self.dead_letters = PromCounter(
            "multichannel_dead_letters", "Dead-letter records by reason code.", ["reason"], registry=r
        )
        self.records_out = PromCounter(
            "multichannel_records_out",
            "Records written: decision, status, dead_letter, changelog.",
            ["kind"],
            registry=r,
        )
        self.decisions = PromCounter(
            "multichannel_decisions", "Subscription decisions emitted by decision.", ["decision"], registry=r
        )
        self.batch_size = Histogram(
            "multichannel_batch_size",
            "Input records per transaction.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        self.transaction_records = Histogram(
            "multichannel_transaction_records",
            "Records written per committed transaction: outputs, dead letters, changelog and partner table.",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000),
            registry=r,
        )
        self.transaction_records_max = Gauge(
            "multichannel_transaction_records_max", "The largest committed transaction so far, in records.", registry=r
        )
        self.transaction_seconds = Histogram(
            "multichannel_transaction_duration_seconds",
            "Time from begin to commit of a batch transaction.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.batch_phase_seconds = Histogram(
            "multichannel_batch_phase_seconds",
            "Where a batch's latency goes, by phase: wait (age of the batch's oldest input record when the "
            "batch starts: producer linger, fetch and queueing behind the previous batch), process (decode, "
            "classify, encode), produce (handing the records to the client), offsets (adding the input offsets to "
            "the transaction) and commit (delivering the batch's records and committing).",
            ["phase"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.aborts = PromCounter("multichannel_transaction_aborts", "Aborted batch transactions.", registry=r)
        self.consumer_lag = Gauge(
            "multichannel_consumer_lag",
            "Records behind the high watermark per input partition.",
            ["partition"],
            registry=r,
        )
        self.restore_seconds = Histogram(
            "multichannel_restore_duration_seconds",
            "Time to restore one partition's state from the changelog.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=r,
        )
        self.restore_records = PromCounter(
            "multichannel_restore_records", "Changelog records read while restoring.", registry=r
        )
        self.accounts_held = Gauge("multichannel_accounts_held", "Accounts held in state.", registry=r)
        self.partitions_owned = Gauge("multichannel_partitions_owned", "Input partitions owned.", registry=r)
        self.partners_known = Gauge("multichannel_partners_known", "Partners in the partner table.", registry=r)
        self.timers_fired = PromCounter("multichannel_timers_fired", "Term-end timers that fired.", registry=r)
        self.records_refused = PromCounter(
            "multichannel_records_refused",
            "Accounts whose record a topic refused (too large): their events of the batch were dead-lettered.",
            ["topic"],
            registry=r,
        )
        self.ready = Gauge(
            "multichannel_ready", "1 when state is restored and the partner table caught up.", registry=r
        )
        ProcessCollector(namespace="multichannel", registry=r)  # start time (restarts), CPU, memory of the process

    def publish(self, tally: BatchTally) -> None:
        """Add a committed batch's counts to the counters."""
        for (source, event_type), n in tally.events_in.items():
            self.events_in.labels(source, event_type).inc(n)
        for outcome, n in tally.outcomes.items():
            self.outcomes.labels(outcome).inc(n)
        for reason, n in tally.dead_letters.items():
            self.dead_letters.labels(reason).inc(n)
        for kind, n in tally.records_out.items():
            self.records_out.labels(kind).inc(n)
        for decision, n in tally.decisions.items():
            self.decisions.labels(decision).inc(n)
        for topic, n in tally.records_refused.items():
            self.records_refused.labels(topic).inc(n)
        if tally.timers_fired:
            self.timers_fired.inc(tally.timers_fired)
        if tally.input_records:
            self.batch_size.observe(tally.input_records)
        written = sum(tally.records_out.values())
        self.transaction_records.observe(written)
        if written > self._largest:
            self._largest = written
            self.transaction_records_max.set(written)


@dataclass
class BatchTally:
    """Counts of one batch, published only after its transaction commits."""

    input_records: int = 0
    timers_fired: int = 0
    events_in: Counter[tuple[str, str]] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    records_out: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    records_refused: Counter[str] = field(default_factory=Counter)
    """Refused accounts by the topic of their refused record."""


class HealthState:
    """Liveness (the main loop turned recently) and readiness (restored and caught up)."""

    def __init__(self, stall_after_s: float = 60.0) -> None:
        self._stall_after_s = stall_after_s
        self._last_beat = time.monotonic()
        self.ready = False

    def beat(self) -> None:
        self._last_beat = time.monotonic()

    @property
    def alive(self) -> bool:
        return time.monotonic() - self._last_beat < self._stall_after_s


class OpsServer:
    """Serves /metrics, /healthz and /readyz from a daemon thread."""

    def __init__(self, metrics: ServiceMetrics, health: HealthState, host: str, port: int) -> None:
        handler = _make_handler(metrics, health)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _make_handler(metrics: ServiceMetrics, health: HealthState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = health.alive
                self._send(200 if ok else 503, b"ok\n" if ok else b"stalled\n")
            elif path == "/readyz":
                ok = health.ready and health.alive
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes arrive every few seconds; keep them out of the logs."""

    return Handler

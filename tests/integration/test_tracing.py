"""Tracing on the real broker: an input record's W3C `traceparent` is continued, and every decision, status and
dead letter it caused names a span that is a child of it, across an aborted transaction and its retry.

The service runs in this process (a thread) so that the SDK's in-memory exporter sees its spans. The abort is
injected after the batch's outputs are produced into the open transaction, as a retriable client error: the
service aborts that real transaction and processes the batch again, the way it handles a broker's error."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from config.registry import registry_client
from config.settings import Settings
from consumers.batch import BatchOutput
from consumers.commit import OutputWriter
from consumers.metrics import BatchTally, ServiceMetrics
from consumers.service import ClassifierService
from consumers.tracing import Tracing
from producers.serde import EventEncoder
from tests.integration.pipeline import encode_item, read_topic, wait_until_processed

SettingsFactory = Callable[..., Settings]

TRACED = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
"""(trace id, span id) of the billing system's span that published the traced purchase."""
BAD = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
"""The same for the undecodable record."""


def traceparent(trace_id: str, span_id: str) -> bytes:
    return f"00-{trace_id}-{span_id}-01".encode()


def purchase(customer: str) -> dict[str, Any]:
    return {
        "event_type": "subscription_purchased",
        "event_id": f"buy-{customer}",
        "occurred_at": "2026-03-01T10:00:00Z",
        "partner_id": "PT",
        "customer_id": customer,
        "subscription_id": f"S-{customer}",
        "offer_id": "offer-1",
        "billing_model": "license",
        "channel": "microsoft_direct",
        "quantity": 10,
        "term_start": "2026-01-01",
        "term_end": "2033-01-01",
    }


def publish_traced(settings: Settings) -> None:
    """A partner, a traced purchase, an untraced one and an undecodable record that is traced."""
    encoder = EventEncoder.for_settings(settings, registry_client(settings), auto_register=True)
    partner = {
        "event_type": "partner_program_changed",
        "event_id": "pt",
        "occurred_at": "2026-01-01T00:00:00Z",
        "partner_id": "PT",
        "program": "csp_direct",
        "indirect_provider_ids": [],
    }
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True})
    traced: list[tuple[str, str | bytes | None]] = [("traceparent", traceparent(*TRACED)), ("tracestate", b"billing=1")]
    for item, headers in (
        (partner, None),
        (purchase("C-traced"), traced),
        (purchase("C-plain"), None),
    ):
        topic, key, value = encode_item(settings, encoder, item)
        producer.produce(topic, key=key, value=value, headers=headers)
    producer.produce(
        settings.subscription_topic, key=b"C-bad", value=b"not avro", headers=[("traceparent", traceparent(*BAD))]
    )
    assert producer.flush(30) == 0


def trace_of(headers: list[tuple[str, bytes]] | None) -> tuple[str, str] | None:
    """(trace id, span id) of a record's traceparent header, or None."""
    value = dict(headers or []).get("traceparent")
    if value is None:
        return None
    _version, trace_id, span_id, _flags = value.decode().split("-")
    return trace_id, span_id


def abort_each_traced_record_once(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """After the outputs and changelog are produced into the open transaction and delivered, fail the batch once
    for each traced input record (by trace id) whose outputs it holds; returns the trace ids aborted."""
    aborted: set[str] = set()
    changelog = OutputWriter.changelog

    def failing_changelog(self: OutputWriter, out: BatchOutput, tally: BatchTally) -> None:
        changelog(self, out, tally)
        headers = [m.get("headers") for m in (*out.decisions, *out.statuses)] + [h for *_kv, h in out.dead_letters]
        traces = {t[0] for t in map(trace_of, headers) if t is not None}
        if traces - aborted:
            aborted.update(traces)
            assert self.producer.flush(30) == 0  # the records are in the broker's open transaction, as at a commit
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected before the commit", retriable=True))

    monkeypatch.setattr(OutputWriter, "changelog", failing_changelog)
    return aborted


def run_until_processed(settings: Settings, tracing: Tracing) -> ServiceMetrics:
    metrics = ServiceMetrics()
    service = ClassifierService(settings, metrics=metrics, tracing=tracing)
    exit_code: list[int] = []
    thread = threading.Thread(target=lambda: exit_code.append(service.run(serve_ops=False)), daemon=True)
    thread.start()
    try:
        wait_until_processed(settings, 120)
    finally:
        service.request_stop()
        thread.join(60)
    assert exit_code == [0]
    return metrics


def by_id(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {f"{s.context.span_id:016x}": s for s in spans if s.context is not None}


def test_an_input_traceparent_is_continued_by_every_output_across_an_abort_and_its_retry(
    settings_factory: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The committed decision, status and dead letter of traced records name a consumer span whose parent is
    the input's span in the same trace; the aborted attempt has its own child span, marked aborted with status
    ERROR; an untraced record's outputs carry no traceparent; batches have phase spans and link the records."""
    settings = settings_factory()
    exporter = InMemorySpanExporter()
    publish_traced(settings)
    aborted = abort_each_traced_record_once(monkeypatch)
    metrics = run_until_processed(settings, Tracing.exporting_to(exporter, settings))
    assert aborted == {TRACED[0], BAD[0]}
    assert metrics.aborts._value.get() >= 1
    spans = exporter.get_finished_spans()
    spans_by_id = by_id(spans)

    decisions = read_topic(settings, settings.decision_topic)
    statuses = read_topic(settings, settings.status_topic)
    dead = read_topic(settings, settings.dead_letter_topic)
    traced_outputs = [m for m in (*decisions, *statuses) if m.key() is not None and b"C-traced" in m.key()]
    assert len(traced_outputs) == 2, "one decision and one status of the traced purchase, once each"
    assert all(trace_of(m.headers()) is None for m in (*decisions, *statuses) if b"C-plain" in m.key())
    [bad] = [m for m in dead if m.key() == b"C-bad"]
    for outputs, (trace_id, parent_id) in ((traced_outputs, TRACED), ([bad], BAD)):
        named = {trace_of(m.headers()) for m in outputs}
        assert len(named) == 1, "the outputs of one record name one span"
        [found] = named
        assert found is not None, "the outputs carry a traceparent"
        out_trace, out_span = found
        assert out_trace == trace_id
        span = spans_by_id[out_span]
        assert span.parent is not None and span.parent.is_remote
        assert f"{span.parent.span_id:016x}" == parent_id and span.kind is SpanKind.CONSUMER
        assert span.attributes is not None and span.attributes["multichannel.aborted"] is False
        assert span.status.status_code is StatusCode.OK
        attempts = [
            s
            for s in spans
            if s.parent is not None and f"{s.parent.span_id:016x}" == parent_id and s.context is not None
        ]
        failed = [s for s in attempts if s is not span]
        assert failed, "the aborted attempt has a span of its own"
        for s in failed:
            assert s.attributes is not None and s.attributes["multichannel.aborted"] is True
            assert s.status.status_code is StatusCode.ERROR and "aborted" in (s.status.description or "")
    assert dict(traced_outputs[0].headers() or [])["tracestate"] == b"billing=1", "the trace state goes along"

    batches = [s for s in spans if s.name == "multichannel.batch"]
    assert any(s.attributes is not None and s.attributes["multichannel.aborted"] for s in batches)
    committed = next(
        b
        for b in batches
        if any(f"{link.context.span_id:016x}" == trace_of(bad.headers())[1] for link in b.links)  # type: ignore[index]
    )
    assert committed.context is not None
    phases = {s.name for s in spans if s.parent is not None and s.parent.span_id == committed.context.span_id}
    assert phases >= {"multichannel.process", "multichannel.produce", "multichannel.offsets", "multichannel.commit"}

"""OpenTelemetry tracing of the service's batches, off unless an exporter is named (`OTEL_TRACES_EXPORTER`).

When on, each batch is a span with one child per phase (process, produce, offsets, commit), and each input
record that carries a W3C `traceparent` header gets a span of its own, a child of that remote parent: every
decision, status and dead letter the record caused carries that span's `traceparent`, so a trace goes from the
billing system's event to the decision it led to. The batch span links to the record spans. A batch whose
transaction was aborted ends its spans with status ERROR and `multichannel.aborted=true`; its retry is a new
batch with new spans, and only the retry's outputs are ever read (`read_committed`).

When off the service holds no `Tracing` (None) and checks that once per batch: no header is read, no span is
made, and the SDK is never imported (it is imported here only by `Tracing.from_settings` when tracing is on).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from confluent_kafka import Message

from config.settings import Settings
from consumers.messages import offset_of, partition_of

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

    from consumers.batch import BatchOutput

PHASES: Final = ("process", "produce", "offsets", "commit")
"""A batch's phases in their order (at least once has no commit of its own: its offsets are the commit)."""

TRACE_HEADERS: Final = ("traceparent", "tracestate")

Source = tuple[str, int, int]
"""(topic, partition, offset) of an input record."""
Marks = Sequence[tuple[str, float]]
"""(phase that ended, monotonic time) as a commit strategy records them; `begin` ends no phase."""


class Tracing:
    """The tracer of one service run; `batch` starts the spans of one batch."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("multichannel.service")
        self.propagator = TraceContextTextMapPropagator()
        self._set_span_in_context = trace.set_span_in_context

    @classmethod
    def from_settings(cls, s: Settings) -> Tracing | None:
        """The tracing the settings ask for, or None when off (nothing is imported then)."""
        if not s.tracing:
            return None
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        exporters: list[SpanExporter] = []
        names = s.otel_traces_exporter.split(",")
        if "otlp" in names:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            base = (s.otel_exporter_otlp_endpoint or "http://localhost:4318").rstrip("/")
            exporters.append(OTLPSpanExporter(endpoint=s.otel_exporter_otlp_traces_endpoint or f"{base}/v1/traces"))
        if "console" in names:
            exporters.append(ConsoleSpanExporter())
        tracing = cls(_provider(s))
        for exporter in exporters:
            tracing.provider.add_span_processor(BatchSpanProcessor(exporter))
        return tracing

    @classmethod
    def exporting_to(cls, exporter: SpanExporter, s: Settings) -> Tracing:
        """Tracing whose spans go to `exporter` as each one ends (tests: the SDK's in-memory exporter)."""
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        tracing = cls(_provider(s))
        tracing.provider.add_span_processor(SimpleSpanProcessor(exporter))
        return tracing

    def batch(self, records: Sequence[Message], partner_records: Sequence[Message]) -> BatchTrace:
        return BatchTrace(self, records, partner_records)

    def shutdown(self) -> None:
        """Export what is still queued and stop the exporters."""
        self.provider.shutdown()


def _provider(s: Settings) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider, sampling

    ratio = s.otel_traces_sampler_arg
    samplers: dict[str, Callable[[], sampling.Sampler]] = {
        "always_on": lambda: sampling.ALWAYS_ON,
        "always_off": lambda: sampling.ALWAYS_OFF,
        "traceidratio": lambda: sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": lambda: sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": lambda: sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }
    resource = Resource({"service.name": s.otel_service_name, "service.instance.id": s.transactional_id})
    return TracerProvider(resource=resource, sampler=samplers[s.otel_traces_sampler]())


def _trace_headers(msg: Message) -> dict[str, str] | None:
    """The record's `traceparent` (and `tracestate`), or None when it has no traceparent."""
    raw = msg.headers()
    if not raw:
        return None
    found: dict[str, str] = {}
    for k, v in raw.items() if isinstance(raw, dict) else raw:
        if k in TRACE_HEADERS and v is not None:
            found[k] = v.decode(errors="replace") if isinstance(v, bytes) else str(v)
    return found if "traceparent" in found else None


class BatchTrace:
    """The spans of one batch: the batch, one per traced input record, and the phases when it ends."""

    def __init__(self, tracing: Tracing, records: Sequence[Message], partner_records: Sequence[Message]) -> None:
        from opentelemetry.trace import Link, SpanKind, get_current_span

        self.tracing = tracing
        self.started = time.monotonic()
        self.aborted = ""
        """Why the batch's transaction was aborted; empty while it was not."""
        tracer = tracing.tracer
        self.span = tracer.start_span(
            "multichannel.batch", attributes={"multichannel.records": len(records) + len(partner_records)}
        )
        self.records: dict[Source, tuple[Span, list[tuple[str, bytes]]]] = {}
        """Traced input records: their span and the headers that name it, for the outputs they cause."""
        batch_link = [Link(self.span.get_span_context())]
        for msg in (*records, *partner_records):
            carrier = _trace_headers(msg)
            if carrier is None:
                continue
            parent = tracing.propagator.extract(carrier)
            if not get_current_span(parent).get_span_context().is_valid:
                continue  # an unreadable traceparent: no trace to continue
            topic = msg.topic() or ""
            span = tracer.start_span(
                f"process {topic}",
                context=parent,
                kind=SpanKind.CONSUMER,
                links=batch_link,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": topic,
                    "messaging.destination.partition.id": str(partition_of(msg)),
                    "messaging.kafka.offset": offset_of(msg),
                },
            )
            self.records[topic, partition_of(msg), offset_of(msg)] = (span, self._headers(span))
            self.span.add_link(span.get_span_context())

    def _headers(self, span: Span) -> list[tuple[str, bytes]]:
        carrier: dict[str, str] = {}
        self.tracing.propagator.inject(carrier, self.tracing._set_span_in_context(span))
        return [(k, carrier[k].encode()) for k in TRACE_HEADERS if k in carrier]

    def attribution(
        self, apply: Callable[..., Any], records: Sequence[Message], decoded: Sequence[Any], out: BatchOutput
    ) -> Attribution:
        """`apply` (the classifier's) wrapped so that what each traced record's event emits into `out` is
        tagged with the record's span; see `Attribution`."""
        own: dict[int, list[tuple[str, bytes]]] = {}
        for msg, item in zip(records, decoded, strict=True):
            traced = self.records.get((msg.topic() or "", partition_of(msg), offset_of(msg)))
            if traced is not None:
                own[id(item)] = traced[1]
        return Attribution(apply, own, out)

    def tag_dead_letters(self, out: BatchOutput) -> None:
        """A dead letter of a traced record names the record's span instead of the input's own parent."""
        for _key, _value, headers in out.dead_letters:
            own = dict(headers)
            source = (own.get("source.topic"), own.get("source.partition"), own.get("source.offset"))
            if not all(isinstance(v, bytes) for v in source):
                continue
            topic, partition, offset = (v.decode() for v in source if isinstance(v, bytes))
            traced = self.records.get((topic, int(partition), int(offset)))
            if traced is not None:
                headers[:] = [*((k, v) for k, v in headers if k not in TRACE_HEADERS), *traced[1]]

    def end(self, marks: Marks, error: str = "") -> None:
        """End the phases (from the commit strategy's marks), the record spans and the batch span; `error` (or
        an abort) sets status ERROR, and an abort `multichannel.aborted=true`."""
        from opentelemetry.trace import Status, StatusCode

        now_mono, now_ns = time.monotonic(), time.time_ns()

        def ns(mono: float) -> int:
            return now_ns - int((now_mono - mono) * 1e9)

        tracer, context = self.tracing.tracer, self.tracing._set_span_in_context(self.span)
        failed = error or (f"transaction aborted: {self.aborted}" if self.aborted else "")
        status = Status(StatusCode.ERROR, failed) if failed else Status(StatusCode.OK)
        start, done = self.started, set[str]()
        for phase, at in marks:
            if at < self.started:
                continue  # a mark of an earlier batch: this one never got that far
            if phase in PHASES:
                tracer.start_span(f"multichannel.{phase}", context=context, start_time=ns(start)).end(ns(at))
                done.add(phase)
            start = at
        if failed:  # the phase that was running when the batch failed
            phase = next((p for p in PHASES if p not in done), PHASES[-1])
            span = tracer.start_span(f"multichannel.{phase}", context=context, start_time=ns(start))
            span.set_status(status)
            span.end(now_ns)
        for span, _headers in self.records.values():
            span.set_attribute("multichannel.aborted", bool(self.aborted))
            span.set_status(status)
            span.end(now_ns)
        self.span.set_attribute("multichannel.aborted", bool(self.aborted))
        self.span.set_status(status)
        self.span.end(now_ns)


class Attribution:
    """Tags the outputs of traced events. In the processor's loops, whatever `_emit` adds to the batch's decisions
    and statuses after `apply(event)` returns and before the next `apply` is that event's: each call of `apply`
    first tags the previous event's outputs, `close` the last one's. Decisions and statuses get a `headers`
    entry, which the producer's `produce_batch` sends. With no traced event, `apply` is the classifier's own."""

    def __init__(self, apply: Callable[..., Any], own: dict[int, list[tuple[str, bytes]]], out: BatchOutput) -> None:
        self._apply, self._own, self._out = apply, own, out
        self._headers: list[tuple[str, bytes]] | None = None
        self._from = (0, 0)
        self.apply: Callable[..., Any] = self._traced_apply if own else apply

    def _traced_apply(self, event: Any, now: Any) -> Any:
        out = self._out
        self.close()
        self._headers = self._own.get(id(event))
        self._from = (len(out.decisions), len(out.statuses))
        return self._apply(event, now)

    def close(self) -> None:
        headers, out = self._headers, self._out
        if headers is None:
            return
        first_decision, first_status = self._from
        out.traced = True
        for m in out.decisions[first_decision:]:
            m["headers"] = headers
        for m in out.statuses[first_status:]:
            m["headers"] = headers
        self._headers = None

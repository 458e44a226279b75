"""The month-end storm: term ends all due at once, restored from a changelog written before the start."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from benchmarks.common import BenchError, ShapeOptions, last_error_line, log_event, scrape_metrics
from benchmarks.shape_events import EventDict, encode_events, murmur2_partition
from benchmarks.shape_probes import Stuck, decision_reader, topic_ends
from benchmarks.variants import Variants, running
from benchmarks.workload import produce_all
from config.registry import registry_client
from config.settings import Settings
from consumers.changelog import RestoredPartition
from consumers.serde import Decoder
from consumers.store import AccountStore
from consumers.topics import ensure_topics
from multichannel.engine import Classifier
from multichannel.model import PartnerProgramChanged
from multichannel.parse import parse_event
from producers.generator import storm_events
from producers.serde import EventEncoder
from schemas import SUBSCRIPTION_DECISION

SCRAPE_S = 0.1
"""How often the storm's observer reads the service's /metrics: often enough that most intervals between two
reads hold at most one transaction commit (a storm's transactions take longer)."""


TRANSACTION_RECORDS_METRIC = "multichannel_transaction_records"
"""A histogram of records per transaction, when the service has it: the storm's largest transaction is read
from it (the upper bound of its highest non-empty bucket) beside the count from the transaction markers."""


def largest_from_metric(metrics: dict[str, list[tuple[str, dict[str, str], float]]]) -> float | None:
    """The upper bound of the highest non-empty bucket of `TRANSACTION_RECORDS_METRIC`, None without it."""
    samples = metrics.get(TRANSACTION_RECORDS_METRIC)
    if not samples:
        return None
    buckets = sorted((float(lab["le"]), v) for name, lab, v in samples if name.endswith("_bucket"))
    total = buckets[-1][1] if buckets else 0.0
    if not total:
        return None
    below = [le for le, count in buckets if count < total]
    above = [le for le, count in buckets if count >= total]
    return above[0] if above else (below[-1] if below else None)


def transactions_from_scrapes(scrapes: list[tuple[float, float]]) -> tuple[list[int], int | None]:
    """Records per transaction from successive scrapes of the service's (transactions committed, records
    written) counters: an interval in which exactly one transaction committed gives that transaction's size
    exactly; one with several gives only their sum, an upper bound of its largest. Returns (the exact
    sizes, the largest such sum or None)."""
    exact: list[int] = []
    upper: int | None = None
    for (t0, r0), (t1, r1) in pairwise(scrapes):
        done, records = round(t1 - t0), round(r1 - r0)
        if done == 1:
            exact.append(records)
        elif done > 1:
            upper = max(upper or 0, records)
    return exact, upper


def _counters(metrics: dict[str, list[tuple[str, dict[str, str], float]]]) -> tuple[float, float] | None:
    """(transactions committed, records written to every topic) from one scrape, None without them."""
    txns = metrics.get("multichannel_transaction_duration_seconds")
    out = metrics.get("multichannel_records_out")
    if not txns or out is None:
        return None
    count = sum(v for n, _lab, v in txns if n.endswith("_count"))
    return count, sum(v for n, _lab, v in out if n.endswith("_total"))


def marker_segments(
    settings: Settings, topics: dict[str, int], start: dict[str, dict[int, int]]
) -> list[tuple[int, int, int]]:
    """Every run of records between two transaction markers on `topics` (name -> partitions), from `start`
    (topic -> partition -> offset, default the beginning) to the end, read_uncommitted: a marker takes an
    offset, so a gap in the offsets of consecutive records is one, and so is the end of a partition."""
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"bench-markers-{uuid.uuid4().hex}",
            "isolation.level": "read_uncommitted",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    ends: dict[tuple[str, int], int] = {}
    assign = []
    for topic, n in topics.items():
        for p in range(n):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            first = start.get(topic, {}).get(p, 0)
            if high > first:
                ends[topic, p] = high
                assign.append(TopicPartition(topic, p, first if first else OFFSET_BEGINNING))
    runs: dict[tuple[str, int], list[list[int]]] = {}
    last_offset: dict[tuple[str, int], int] = {}
    pending = set(ends)
    consumer.assign(assign)
    deadline = time.monotonic() + 300
    try:
        while pending:
            if time.monotonic() > deadline:
                raise BenchError("transaction markers: the output topics were not read to their end")
            for m in consumer.consume(50_000, 0.5):
                tp = (m.topic() or "", m.partition() or 0)
                if m.error() is not None:
                    pending.discard(tp)
                    continue
                offset, ts = m.offset() or 0, m.timestamp()[1]
                own = runs.setdefault(tp, [])
                if own and offset == last_offset[tp] + 1:
                    own[-1][0] += 1
                    own[-1][2] = ts
                else:
                    own.append([1, ts, ts])
                last_offset[tp] = offset
                if offset >= ends[tp] - 1:
                    pending.discard(tp)
    finally:
        consumer.close()
    return [(c, a, b) for own in runs.values() for c, a, b in own]


def _log_wall(log: Any, name: str) -> float | None:
    """The wall time of the service's first `name` log line, None without one."""
    found = log_event(log, name)
    return None if found is None else datetime.fromisoformat(found["timestamp"]).timestamp()


def storm_state(
    opts: ShapeOptions, partitions: int, end: date
) -> tuple[list[EventDict], list[tuple[int, bytes, bytes]]]:
    """The storm's partner events, and the changelog records of its accounts as the store writes them after
    applying every purchase at one second before `end`'s midnight: each term is open, its deadline (00:00
    UTC of `end`) still ahead of the state's last evaluation. The records are in whatever layout the store
    writes (`changelog_records`), each in the partition of its customer's input records."""
    events = list(storm_events(opts.storm_terms, opts.storm_accounts, end, opts.seed, with_programs=True))
    partners = [e for e in events if e["event_type"] == "partner_program_changed"]
    clock = datetime.combine(end, datetime.min.time(), tzinfo=UTC) - timedelta(seconds=1)
    store = AccountStore(Classifier(), partitions, lambda _values: [])
    store.assign([RestoredPartition(p, {}, 0, 0.0) for p in range(partitions)], clock)
    store.begin()
    keys: dict[int, set[tuple[str, str]]] = {}
    apply = store.classifier.apply
    for e in events:
        event = parse_event(e)
        apply(event, clock)
        if not isinstance(event, PartnerProgramChanged):
            partition = murmur2_partition(event.customer_id.encode(), partitions)
            keys.setdefault(partition, set()).add((event.partner_id, event.customer_id))
    for partition, held in sorted(keys.items()):
        store.note(partition, held)
    records = store.changelog_records()
    store.commit()
    return partners, records


def measure_storm(variants: Variants, settings: Settings, tag: str, opts: ShapeOptions) -> dict[str, Any]:
    """`opts.storm_terms` term ends at 00:00 UTC today, restored from a changelog written before the service
    starts (no input at all: the changelog is the state). From the service's readiness (its restore done)
    to the last TERM_ENDED decision a read_committed reader sees; the count; the transactions it took."""
    label = f"{tag}-storm"
    topic = f"bench-{label}-input"
    partner_topic = f"bench-{label}-partners"
    ensure_topics(
        settings.kafka_client_config(),
        {topic: (settings.input_partitions, "delete"), partner_topic: (settings.partner_partitions, "compact")},
        1,
    )
    launch, s = variants.service(label, topic, "exactly_once_v2", partner_topic=partner_topic)
    today = datetime.now(UTC).date()
    built = time.monotonic()
    partners, records = storm_state(opts, s.input_partitions, today)
    build_s = time.monotonic() - built
    _write_state(s, partner_topic, partners, records)
    changelog_start = topic_ends(s, s.changelog_topic, s.input_partitions)
    reader, _start = decision_reader(s)
    watch = _StormWatch(Decoder(registry_client(s), SUBSCRIPTION_DECISION))
    result: dict[str, Any] = {
        "terms": opts.storm_terms,
        "accounts": opts.storm_accounts,
        "state_records_written": len(records),
        "state_build_s": round(build_s, 1),
        "deadline": f"{today.isoformat()}T00:00:00Z",
    }
    try:
        with running(launch) as proc:
            watch.follow(proc, launch.log, reader, opts.storm_terms, 120 + opts.storm_terms / 500, result)
            ready = _log_wall(launch.log, "partitions_restored")
            started = _log_wall(launch.log, "starting")
            restored = log_event(launch.log, "partitions_restored") or {}
    finally:
        reader.close()
    segments = marker_segments(
        s,
        {
            s.decision_topic: s.output_partitions,
            s.status_topic: s.output_partitions,
            s.changelog_topic: s.input_partitions,
        },
        {s.changelog_topic: changelog_start},
    )
    result.update(watch.figures(opts.storm_terms, ready, started, restored, segments))
    return result


def _write_state(
    s: Settings, partner_topic: str, partners: list[EventDict], records: list[tuple[int, bytes, bytes]]
) -> None:
    """The storm's partner events to their topic and its state to the service's changelog, before it starts."""
    encoder = EventEncoder.for_settings(s, registry_client(s), auto_register=True)
    produce_all(s, partner_topic, encode_events(encoder, partners))
    producer = Producer(
        {**s.kafka_client_config(), "linger.ms": 20, "compression.type": "lz4", "enable.idempotence": True}
    )
    for partition, key, value in records:
        while True:
            try:
                producer.produce(s.changelog_topic, value=value, key=key, partition=partition)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise BenchError("could not write the storm's state to the changelog")


class _StormWatch:
    """What the storm's observer sees: the TERM_ENDED decisions per subscription (first and last seen, wall
    clock), the service's transaction counters every SCRAPE_S, and its metrics at the end."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self.ended: dict[str, int] = {}
        self.first_wall: float | None = None
        self.last_wall: float | None = None
        self.metrics: dict[str, list[tuple[str, dict[str, str], float]]] = {}
        self.scrapes: list[tuple[float, float]] = []

    def follow(self, proc: Any, log: Any, reader: Consumer, terms: int, limit_s: float, result: dict[str, Any]) -> None:
        """Until every term end is decided, the service exits or keeps aborting (the reason into `result`),
        or `limit_s` has passed."""
        deadline = time.monotonic() + limit_s
        stuck: Stuck | None = None
        checked = time.monotonic()
        scraped = 0.0
        while len(self.ended) < terms:
            if proc.poll() is not None:
                result["error"] = f"the service exited with {proc.returncode}: {last_error_line(log)}"
                break
            if time.monotonic() - scraped >= SCRAPE_S:
                scraped = time.monotonic()
                counters = _counters(scrape_metrics(log))
                if counters is not None:
                    self.scrapes.append(counters)
            if time.monotonic() > deadline:
                break
            if time.monotonic() - checked >= 1.0:
                checked = time.monotonic()
                stuck = stuck or Stuck(log, aborts=5)
                try:
                    stuck.check()
                except BenchError as exc:
                    result["error"] = str(exc)
                    break
            self._read(reader)
        self.metrics = scrape_metrics(log)
        last = _counters(self.metrics)
        if last is not None:
            self.scrapes.append(last)

    def _read(self, reader: Consumer) -> None:
        msgs = [m for m in reader.consume(5000, SCRAPE_S / 2) if m.error() is None]
        wall = time.time()
        for rec in self.decoder.decode_values([m.value() or b"" for m in msgs]):
            if isinstance(rec, dict) and rec["reason"] == "TERM_ENDED":
                sub = f"{rec['partner_id']}:{rec['customer_id']}:{rec['subscription_id']}"
                self.ended[sub] = self.ended.get(sub, 0) + 1
                self.first_wall = self.first_wall or wall
                self.last_wall = wall

    def _gauge(self, name: str) -> int | None:
        """The service's own figure (the largest committed transaction), when it exports it."""
        samples = self.metrics.get(name)
        return None if not samples else round(max(v for _n, _lab, v in samples))

    def _counter(self, name: str) -> float | None:
        samples = self.metrics.get(name)
        return None if not samples else sum(v for n, _lab, v in samples if n.endswith(("_total", "_count")))

    def figures(
        self,
        terms: int,
        ready: float | None,
        started: float | None,
        restored: dict[str, Any],
        segments: list[tuple[int, int, int]],
    ) -> dict[str, Any]:
        """The section's figures from what was seen, the service's log times and the marker segments."""
        scrapes, ended, first_wall, last_wall = self.scrapes, self.ended, self.first_wall, self.last_wall
        exact, upper = transactions_from_scrapes(scrapes)
        first_scrape = scrapes[0] if scrapes else (0.0, 0.0)
        largest = self._gauge("multichannel_transaction_records_max")
        return {
            "term_ended": len(ended),
            "term_ended_records": sum(ended.values()),
            "timed_out": len(ended) < terms,
            "restore_records": restored.get("changelog_records"),
            "restore_s": restored.get("seconds"),
            "start_to_ready_s": None if ready is None or started is None else round(ready - started, 2),
            "ready_to_first_s": None if ready is None or first_wall is None else round(first_wall - ready, 2),
            "ready_to_last_s": None if ready is None or last_wall is None else round(last_wall - ready, 2),
            "transactions": None if not scrapes else round(scrapes[-1][0] - first_scrape[0]),
            "records_written": None if not scrapes else round(scrapes[-1][1] - first_scrape[1]),
            "largest_transaction_records": largest or (max(exact) if exact else None),
            "largest_transaction_upper_bound": None if largest else upper,
            "largest_partition_run": max((c for c, _a, _b in segments), default=None),
            "scrapes": len(scrapes),
            "largest_transaction_metric": largest_from_metric(self.metrics),
            "service_transactions": self._counter("multichannel_transaction_duration_seconds"),
            "aborts": self._counter("multichannel_transaction_aborts"),
            "timers_fired": self._counter("multichannel_timers_fired"),
        }

"""CSP data shapes against the running service: big accounts, a month-end storm, the realistic workload.

Three measurements of `multichannel bench`, each through the service's public behaviour (its topics, its
log lines and metrics, its process), never through the changelog's encoding, which may change:

- changelog bytes per input event: accounts of several sizes are built through the exactly-once service,
  then a fixed number of further events (new purchases, renewals, cancellations) is sent to each, one
  transaction apiece, and the key and value bytes the changelog gained meanwhile (read_committed) are
  divided by the events;
- one account of `giant` subscriptions: the time to process it, then a SIGKILL and a restart at once:
  the restore (records, seconds) and the time to the account's next decision, checked against the pure
  engine's decision for the same history;
- a month-end storm: `storm_terms` license terms ending at 00:00 UTC today, in state evaluated before that
  instant (built offline with the store, written to the changelog before the service starts; no input):
  the service restores them and every deadline is due at once. From its readiness to the last TERM_ENDED
  decision a read_committed reader sees, the count, and the largest transaction.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from benchmarks.suite import (
    BenchError,
    Launch,
    ShapeOptions,
    Variants,
    _avoid_near_deadlines,
    _last_error_line,
    _log_event,
    _ops_port,
    _recovery_breakdown,
    drop_topics,
    produce_all,
    running,
)
from config.registry import registry_client
from config.settings import Settings
from consumers.changelog import RestoredPartition
from consumers.serde import Decoder
from consumers.store import AccountStore
from consumers.topics import ensure_topics
from multichannel.engine import Classifier
from multichannel.model import PartnerProgramChanged
from multichannel.parse import event_to_dict, parse_event
from multichannel.records import SubscriptionDecision
from producers.generator import BadRecord, WorkloadGenerator, WorkloadSpec, storm_events
from producers.serde import EventEncoder
from schemas import SUBSCRIPTION_DECISION

EventDict = dict[str, Any]
BYTES_PER_EVENT_GOAL = 2048
"""Changelog bytes per input event the state layout must stay under, whatever the account's size."""


def _ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_of(today: date, months: int) -> str:
    index = today.year * 12 + today.month - 1 + months
    return date(index // 12, index % 12 + 1, 1).isoformat()


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition the service's and the publisher's partitioner (`murmur2_random`, Kafka's own) gives a
    key: a storm account's changelog records go where its customer's input records would."""
    m, length = 0x5BD1E995, len(key)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = key[i] | key[i + 1] << 8 | key[i + 2] << 16 | key[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length & ~3
    extra = length % 4
    if extra == 3:
        h ^= key[tail + 2] << 16
    if extra >= 2:
        h ^= key[tail + 1] << 8
    if extra >= 1:
        h ^= key[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


# ---------------------------------------------------------------------------------- events
def account_events(size: int, customer_id: str, seed: int) -> tuple[list[EventDict], list[EventDict]]:
    """(partner events, account events) of one realistic account of `size` subscriptions: the generator's
    giant account (an enterprise buying profile), renamed to `customer_id`. Its terms lie in the past or at
    least two days ahead, so no timer fires while it is measured. The partner events are the same for
    every size with the same seed."""
    today = datetime.now(UTC).date()
    spec = WorkloadSpec(
        seed=seed,
        shape="realistic",
        partners=50,
        customers=0,
        giant_accounts=(size,),
        start=datetime.combine(today - timedelta(days=420), datetime.min.time(), tzinfo=UTC),
        days=300,
        bad_rate=0.0,
        duplicate_rate=0.0,
        partner_change_rate=0.0,
    )
    partners: list[EventDict] = []
    events: list[EventDict] = []
    for item in WorkloadGenerator(spec).events():
        if isinstance(item, BadRecord):
            continue
        if item["event_type"] == "partner_program_changed":
            partners.append(item)
            continue
        old = item["customer_id"]
        item["customer_id"] = customer_id
        if "subscription_id" in item:
            item["subscription_id"] = item["subscription_id"].replace(old, customer_id, 1)
        _avoid_near_deadlines(item, today)
        events.append(item)
    return partners, events


def further_events(account: list[EventDict], n: int, tag: str) -> list[EventDict]:
    """`n` events on an account already built from `account`: in turn a new license purchase, a renewal of
    a license subscription still open, and a cancellation of a subscription still open (existing ones first,
    then those bought here). Terms end at least a year ahead: no timer fires while they are measured."""
    today = datetime.now(UTC).date()
    pid, cid = account[0]["partner_id"], account[0]["customer_id"]
    cancelled = {e["subscription_id"] for e in account if e["event_type"] == "subscription_cancelled"}
    bought = [e for e in account if e["event_type"] == "subscription_purchased"]
    open_subs = [e["subscription_id"] for e in bought if e["subscription_id"] not in cancelled]
    licenses = [
        e["subscription_id"]
        for e in bought
        if e["billing_model"] == "license" and e["subscription_id"] not in cancelled
    ]
    out: list[EventDict] = []
    renewals = 0
    for i in range(n):
        base = {
            "event_id": f"{tag}-{i}",
            "occurred_at": _ts(datetime.now(UTC)),
            "partner_id": pid,
            "customer_id": cid,
        }
        kind = i % 3
        if kind == 0 or not licenses or not open_subs:
            sid = f"S-{cid}-{tag}-{i}"
            out.append(
                {
                    **base,
                    "event_type": "subscription_purchased",
                    "subscription_id": sid,
                    "offer_id": "O365-E3",
                    "billing_model": "license",
                    "channel": "csp",
                    "seller_partner_id": pid,
                    "quantity": 10,
                    "term_start": _first_of(today, 0),
                    "term_end": _first_of(today, 12),
                }
            )
            open_subs.append(sid)
            licenses.append(sid)
        elif kind == 1:
            sid = licenses[renewals % len(licenses)]
            renewals += 1
            out.append(
                {
                    **base,
                    "event_type": "subscription_renewed",
                    "subscription_id": sid,
                    "term_end": _first_of(today, 24 + renewals),
                }
            )
        else:
            sid = open_subs.pop(0)
            if sid in licenses:
                licenses.remove(sid)
            out.append({**base, "event_type": "subscription_cancelled", "subscription_id": sid})
    return out


# ---------------------------------------------------------------------------------- Kafka helpers
def _encode(encoder: EventEncoder, events: Iterable[EventDict]) -> list[tuple[bytes, bytes]]:
    out = []
    for e in events:
        event = parse_event(e)
        record = event_to_dict(event)
        if isinstance(event, PartnerProgramChanged):
            out.append((event.partner_id.encode(), encoder.encode_partner_event(record)))
        else:
            out.append((event.customer_id.encode(), encoder.encode_subscription_event(record)))
    return out


def _ends(settings: Settings, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"bench-ends-{uuid.uuid4().hex}"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        consumer.close()


class Committed:
    """The service group's committed input offsets, read from outside the process."""

    def __init__(self, settings: Settings, group: str, topic: str) -> None:
        self.watcher = Consumer({**settings.kafka_client_config(), "group.id": group, "enable.auto.commit": False})
        self.parts = [TopicPartition(topic, p) for p in range(settings.input_partitions)]

    def offsets(self) -> dict[int, int]:
        return {tp.partition: max(tp.offset, 0) for tp in self.watcher.committed(self.parts, timeout=10)}

    def wait(
        self, ends: dict[int, int], proc: Any, deadline_s: float, poll_s: float = 0.05, stuck: Stuck | None = None
    ) -> float:
        """Until every partition's committed offset reaches `ends`; returns the monotonic time it did."""
        deadline = time.monotonic() + deadline_s
        checked = time.monotonic()
        while True:
            if stuck is not None and time.monotonic() - checked >= 1.0:
                stuck.check()
                checked = time.monotonic()
            done = self.offsets()
            now = time.monotonic()
            if all(done.get(p, 0) >= end for p, end in ends.items()):
                return now
            if proc.poll() is not None:
                why = f": {_last_error_line(stuck.log)}" if stuck is not None else ""
                raise BenchError(f"the service exited with {proc.returncode} while processing{why}")
            if now > deadline:
                behind = {p: (done.get(p), end) for p, end in ends.items() if done.get(p, 0) < end}
                raise BenchError(f"input not processed in {deadline_s:.0f} s: {behind}")
            time.sleep(poll_s)  # sampling period of the outside observer

    def close(self) -> None:
        self.watcher.close()


def changelog_bytes(settings: Settings, topic: str, start: dict[int, int], end: dict[int, int]) -> tuple[int, int]:
    """(records, key + value bytes) the changelog holds from `start` up to `end` per partition, as a
    read_committed reader sees them (control records take offsets but are not delivered)."""
    todo = {p: (start.get(p, 0), e) for p, e in end.items() if e > start.get(p, 0)}
    if not todo:
        return 0, 0
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"bench-bytes-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, s) for p, (s, _e) in todo.items()])
    records = size = 0
    pending = set(todo)
    deadline = time.monotonic() + 120
    try:
        while pending:
            if time.monotonic() > deadline:
                raise BenchError(f"changelog {topic}: partitions {sorted(pending)} not read to their end")
            for m in consumer.consume(10_000, 0.5):
                p = m.partition() or 0
                if m.error() is not None:
                    pending.discard(p)  # end of partition
                    continue
                if (m.offset() or 0) < todo[p][1]:
                    records += 1
                    size += len(m.key() or b"") + len(m.value() or b"")
                else:
                    pending.discard(p)
    finally:
        consumer.close()
    return records, size


def _scrape(log: Any) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """The service's /metrics as family name -> samples (name, labels, value); {} when not reachable."""
    from prometheus_client.parser import text_string_to_metric_families

    port = _ops_port(log)
    if port is None:
        return {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    return {
        f.name: [(s.name, dict(s.labels), s.value) for s in f.samples] for f in text_string_to_metric_families(text)
    }


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


# ---------------------------------------------------------------------------------- big accounts
@dataclass
class _Probe:
    """A read_committed reader of the decisions, keeping (decision, reason, rule) per causing event id."""

    reader: Consumer
    decoder: Decoder
    seen: dict[str, tuple[float, tuple[str, str, str], str]]

    def read(self, timeout_s: float = 0.05) -> None:
        msgs = [m for m in self.reader.consume(2000, timeout_s) if m.error() is None]
        now = time.monotonic()
        for rec in self.decoder.decode_values([m.value() or b"" for m in msgs]):
            if isinstance(rec, dict) and rec["caused_by_event_id"]:
                verdict = (rec["decision"], rec["reason"], rec["rule"])
                self.seen.setdefault(rec["caused_by_event_id"], (now, verdict, rec["subscription_id"]))


def expected_decision(
    partners: list[EventDict], events: list[EventDict], probe: EventDict
) -> tuple[str, str, str] | None:
    """The pure engine's (decision, reason, rule) for `probe`'s subscription, after the partner events and
    the account's `events`, at the wall clock."""
    engine = Classifier(transactional=False)
    now = datetime.now(UTC)
    for e in [*partners, *events]:
        engine.apply(parse_event(e), now)
    for rec in engine.apply(parse_event(probe), now) or []:
        if isinstance(rec, SubscriptionDecision) and rec.subscription_id == probe["subscription_id"]:
            return rec.decision.value, rec.reason.value, rec.rule.value
    return None


def _last_abort(log: Any) -> str | None:
    """The error of the service's last `transaction_abort` log line, None without one."""
    if not log.exists():
        return None
    found: str | None = None
    for line in log.read_text(errors="replace").splitlines():
        if '"transaction_abort"' in line:
            found = line
    if found is None:
        return None
    try:
        error: Any = json.loads(found).get("error")
        return str(error)
    except ValueError:
        return found[:300]


class Stuck:
    """Says when the service keeps aborting its transactions (as it does on a record it cannot write): the
    wait for its progress ends then, with the abort's error, instead of at the deadline."""

    def __init__(self, log: Any, aborts: int = 3) -> None:
        self.log, self.limit = log, aborts
        self.base = self._aborts()

    def _aborts(self) -> float:
        samples = _scrape(self.log).get("multichannel_transaction_aborts") or []
        return sum(v for n, _lab, v in samples if n.endswith("_total"))

    def check(self) -> None:
        if self._aborts() - self.base >= self.limit:
            raise BenchError(f"the service aborts its transactions: {_last_abort(self.log)}")


def _decision_reader(settings: Settings) -> tuple[Consumer, dict[int, int]]:
    """A read_committed reader of the decisions assigned at their current ends: no group join to wait for."""
    reader = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"bench-reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
        }
    )
    ends = _ends(settings, settings.decision_topic, settings.output_partitions)
    reader.assign([TopicPartition(settings.decision_topic, p, o) for p, o in ends.items()])
    return reader, ends


def measure_big_accounts(variants: Variants, settings: Settings, tag: str, opts: ShapeOptions) -> dict[str, Any]:
    """One exactly-once service on an input topic of its own. The accounts of `opts.sizes` (and one of
    `opts.giant` if it is not among them), smallest first, are each built (their events published at once,
    timed to the group's committed offsets covering them), then sent `opts.further_events` events one at a
    time (each its own transaction) whose changelog bytes are counted. Then the service is SIGKILLed and
    started again at once, and a cancellation on the giant account is sent: restore, time to its decision,
    and that decision against the pure engine's. A size the service cannot process ends the section with its
    error (the rows measured so far are kept)."""
    label = f"{tag}-accounts"
    topic = f"bench-{label}-input"
    partner_topic = f"bench-{label}-partners"
    ensure_topics(
        settings.kafka_client_config(),
        {topic: (settings.input_partitions, "delete"), partner_topic: (settings.partner_partitions, "compact")},
        1,
    )
    launch, s = variants.service(label, topic, "exactly_once_v2", partner_topic=partner_topic, static_membership=True)
    encoder = EventEncoder.for_settings(s, registry_client(s), auto_register=True)
    sizes = sorted({*opts.sizes, opts.giant})
    built: dict[int, tuple[list[EventDict], list[EventDict]]] = {}
    committed = Committed(s, launch.group, topic)
    producer = Producer({**s.kafka_client_config(), "linger.ms": 0, "enable.idempotence": True})
    result: dict[str, Any] = {"giant": {"subscriptions": opts.giant}, "sizes": []}

    def send(event: EventDict) -> tuple[int, int]:
        """Produce one event; its partition and the offset after it."""
        delivered: list[tuple[int, int]] = []
        key, value = _encode(encoder, [event])[0]

        def report(_err: Any, msg: Any) -> None:
            delivered.append((msg.partition() or 0, (msg.offset() or 0) + 1))

        producer.produce(topic, value=value, key=key, on_delivery=report)
        producer.flush(10)
        if not delivered:
            raise BenchError("an event could not be published")
        return delivered[0]

    try:
        with running(launch) as proc:
            for size in sizes:
                partners, events = account_events(size, f"C-size-{size}", opts.seed)
                if not built:
                    produce_all(s, partner_topic, _encode(encoder, partners))
                row: dict[str, Any] = {"size": size, "events_built": len(events)}
                result["sizes"].append(row)
                try:
                    stuck = Stuck(launch.log)
                    t0 = time.monotonic()
                    produce_all(s, topic, _encode(encoder, events))
                    committed.wait(_ends(s, topic, s.input_partitions), proc, 60 + len(events) / 100, stuck=stuck)
                    row["build_s"] = round(time.monotonic() - t0, 2)
                    built[size] = partners, events
                    row["subscriptions"] = len({e["subscription_id"] for e in events if "subscription_id" in e})
                    if size not in opts.sizes:
                        continue
                    changelog_before = _ends(s, s.changelog_topic, s.input_partitions)
                    more = further_events(events, opts.further_events, f"{label}-more-{size}")
                    t0 = time.monotonic()
                    for event in more:
                        partition, after = send(event)
                        committed.wait({partition: after}, proc, 60, poll_s=0.005, stuck=stuck)
                    row["seconds"] = round(time.monotonic() - t0, 2)
                    records, size_bytes = changelog_bytes(
                        s, s.changelog_topic, changelog_before, _ends(s, s.changelog_topic, s.input_partitions)
                    )
                    row.update(
                        {
                            "events": len(more),
                            "changelog_records": records,
                            "changelog_bytes": size_bytes,
                            "bytes_per_event": round(size_bytes / max(len(more), 1)),
                        }
                    )
                    events.extend(more)
                except BenchError as exc:
                    row["error"] = str(exc)
                    result["error"] = f"{size:,} subscriptions: {exc}"
                    return result
            giant = result["giant"]
            giant["events"] = len(built[opts.giant][1])
            giant["process_s"] = next(r["build_s"] for r in result["sizes"] if r["size"] == opts.giant)
            proc.kill()
            killed = time.monotonic()
            proc.wait()
        partners, events = built[opts.giant]
        restart_log = launch.log.with_name(f"{label}-restart.log")
        restart = Launch(launch.argv, launch.env, launch.group, launch.decision_topic, restart_log)
        cancel = next(
            e for e in further_events(events, 3, f"{label}-probe") if e["event_type"] == "subscription_cancelled"
        )
        expected = expected_decision(partners, events, cancel)
        reader, _ends_now = _decision_reader(s)
        probe = _Probe(reader, Decoder(registry_client(s), SUBSCRIPTION_DECISION), {})
        try:
            with running(restart) as proc:
                restarted, restarted_wall = time.monotonic(), time.time()
                send(cancel)
                deadline = time.monotonic() + 120 + giant["events"] / 1000
                while cancel["event_id"] not in probe.seen:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        giant["error"] = f"no decision for the account after the restart; see {restart_log}"
                        return result
                    probe.read()
                seen_at, verdict, _sid = probe.seen[cancel["event_id"]]
                again = _log_event(restart_log, "partitions_restored") or {}
                giant.update(
                    {
                        "restart_after_kill_s": round(restarted - killed, 2),
                        "restore_records": again.get("changelog_records"),
                        "restore_accounts": again.get("accounts"),
                        "restore_s": again.get("seconds"),
                        "restart_to_next_decision_s": round(seen_at - restarted, 2),
                        "next_decision": list(verdict),
                        "expected_decision": None if expected is None else list(expected),
                        "decided_right": expected is not None and verdict == expected,
                        "breakdown": _recovery_breakdown(
                            restart_log, restarted_wall, restarted_wall + seen_at - restarted
                        ),
                    }
                )
        finally:
            reader.close()
    finally:
        committed.close()
        producer.flush(10)
    return result


def _log_wall(log: Any, name: str) -> float | None:
    """The wall time of the service's first `name` log line, None without one."""
    found = _log_event(log, name)
    return None if found is None else datetime.fromisoformat(found["timestamp"]).timestamp()


# ---------------------------------------------------------------------------------- month-end storm
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
    encoder = EventEncoder.for_settings(s, registry_client(s), auto_register=True)
    produce_all(s, partner_topic, _encode(encoder, partners))
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
    changelog_start = _ends(s, s.changelog_topic, s.input_partitions)
    reader, _start = _decision_reader(s)
    decoder = Decoder(registry_client(s), SUBSCRIPTION_DECISION)
    ended: dict[str, int] = {}
    result: dict[str, Any] = {
        "terms": opts.storm_terms,
        "accounts": opts.storm_accounts,
        "state_records_written": len(records),
        "state_build_s": round(build_s, 1),
        "deadline": f"{today.isoformat()}T00:00:00Z",
    }
    first_wall = last_wall = None
    limit_s = 120 + opts.storm_terms / 500
    metrics: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    scrapes: list[tuple[float, float]] = []
    try:
        with running(launch) as proc:
            deadline = time.monotonic() + limit_s
            stuck: Stuck | None = None
            checked = time.monotonic()
            scraped = 0.0
            while len(ended) < opts.storm_terms:
                if proc.poll() is not None:
                    result["error"] = f"the service exited with {proc.returncode}: {_last_error_line(launch.log)}"
                    break
                if time.monotonic() - scraped >= SCRAPE_S:
                    scraped = time.monotonic()
                    counters = _counters(_scrape(launch.log))
                    if counters is not None:
                        scrapes.append(counters)
                if time.monotonic() > deadline:
                    break
                if time.monotonic() - checked >= 1.0:
                    checked = time.monotonic()
                    stuck = stuck or Stuck(launch.log, aborts=5)
                    try:
                        stuck.check()
                    except BenchError as exc:
                        result["error"] = str(exc)
                        break
                msgs = [m for m in reader.consume(5000, SCRAPE_S / 2) if m.error() is None]
                wall = time.time()
                for rec in decoder.decode_values([m.value() or b"" for m in msgs]):
                    if isinstance(rec, dict) and rec["reason"] == "TERM_ENDED":
                        sub = f"{rec['partner_id']}:{rec['customer_id']}:{rec['subscription_id']}"
                        ended[sub] = ended.get(sub, 0) + 1
                        first_wall = first_wall or wall
                        last_wall = wall
            metrics = _scrape(launch.log)
            last = _counters(metrics)
            if last is not None:
                scrapes.append(last)
            ready = _log_wall(launch.log, "partitions_restored")
            started = _log_wall(launch.log, "starting")
            restored = _log_event(launch.log, "partitions_restored") or {}
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
    exact, upper = transactions_from_scrapes(scrapes)
    first_scrape = scrapes[0] if scrapes else (0.0, 0.0)

    def gauge(name: str) -> int | None:
        """The service's own figure (the largest committed transaction), when it exports it."""
        samples = metrics.get(name)
        return None if not samples else round(max(v for _n, _lab, v in samples))

    def counter(name: str) -> float | None:
        samples = metrics.get(name)
        return None if not samples else sum(v for n, _lab, v in samples if n.endswith(("_total", "_count")))

    result.update(
        {
            "term_ended": len(ended),
            "term_ended_records": sum(ended.values()),
            "timed_out": len(ended) < opts.storm_terms,
            "restore_records": restored.get("changelog_records"),
            "restore_s": restored.get("seconds"),
            "start_to_ready_s": None if ready is None or started is None else round(ready - started, 2),
            "ready_to_first_s": None if ready is None or first_wall is None else round(first_wall - ready, 2),
            "ready_to_last_s": None if ready is None or last_wall is None else round(last_wall - ready, 2),
            "transactions": None if not scrapes else round(scrapes[-1][0] - first_scrape[0]),
            "records_written": None if not scrapes else round(scrapes[-1][1] - first_scrape[1]),
            "largest_transaction_records": gauge("multichannel_transaction_records_max")
            or (max(exact) if exact else None),
            "largest_transaction_upper_bound": None if gauge("multichannel_transaction_records_max") else upper,
            "largest_partition_run": max((c for c, _a, _b in segments), default=None),
            "scrapes": len(scrapes),
            "largest_transaction_metric": largest_from_metric(metrics),
            "service_transactions": counter("multichannel_transaction_duration_seconds"),
            "aborts": counter("multichannel_transaction_aborts"),
            "timers_fired": counter("multichannel_timers_fired"),
        }
    )
    return result


# ---------------------------------------------------------------------------------- report
STORM_TRANSACTION_GOAL = 20_000
"""Records a storm's largest transaction may hold: a tenth of a 200,000-term storm, a few seconds of the
service's work, well inside the 10 s transaction timeout a transaction must commit within."""
STORM_SECONDS_GOAL = 30.0
"""From readiness to the last TERM_ENDED decision of a storm (200,000 terms at full size): under a quarter
of the service's per-event rate (about 25,000 events/s on 2 cores)."""
GIANT_DECISION_GOAL = 3.0
"""SIGKILL to the next decision, as for the small accounts of the recovery section."""


Target = tuple[str, str, bool | None, str]


def shape_targets(shapes: dict[str, Any]) -> list[Target]:
    """The Targets rows of the CSP data shape sections (none for a section not run)."""
    rows: list[Target] = []
    accounts = shapes.get("accounts") or {}
    rows_in = accounts.get("sizes") or []
    measured = [r for r in rows_in if "bytes_per_event" in r]
    failed = [r for r in rows_in if "error" in r]
    if measured or failed:
        per = [
            (r["subscriptions"], r["bytes_per_event"], r["changelog_records"] / max(r["events"], 1)) for r in measured
        ]
        met = not failed and all(b <= BYTES_PER_EVENT_GOAL for _n, b, _r in per)
        notes = []
        over = [x for x in per if x[1] > BYTES_PER_EVENT_GOAL]
        if over:
            worst = max(per, key=lambda x: x[1])
            smallest, biggest = per[0], per[-1]
            grows = biggest[1] > 2 * max(smallest[1], 1)
            how = (
                f"bytes per event grow with the account ({smallest[1]:,} B at {smallest[0]:,} subscriptions, "
                f"{biggest[1]:,} B at {biggest[0]:,}): each transaction rewrites state in proportion to the account, "
                "not to what the event changed"
                if grows
                else f"flat, but each event writes {worst[2]:.1f} changelog records of about "
                f"{worst[1] / max(worst[2], 1e-9):,.0f} bytes"
            )
            notes.append(f"{worst[1] / BYTES_PER_EVENT_GOAL:.2f}x short; bound: {how}")
        for r in failed:
            notes.append(f"the {r['size']:,}-subscription account was not processed: {r['error']}")
        shown = [f"{n:,}: {b:,} B" for n, b, _r in per] + [f"{r['size']:,}: not processed" for r in failed]
        rows.append(
            (
                "changelog bytes per input event ≤ 2,048 at every account size (flat)",
                "; ".join(shown),
                met,
                "; ".join(notes),
            )
        )
    giant = accounts.get("giant") or {}
    if accounts:
        name = (
            f"{giant.get('subscriptions', 0):,}-subscription account: SIGKILL → its next decision ≤ 3 s, decided right"
        )
        seconds = giant.get("restart_to_next_decision_s")
        if seconds is None:
            why = giant.get("error") or accounts.get("error") or "not measured"
            rows.append((name, "n/a", False, f"not measured: {why}"))
        else:
            right = bool(giant.get("decided_right"))
            met = right and seconds <= GIANT_DECISION_GOAL
            note = ""
            if not right:
                note = f"decided {giant.get('next_decision')}, the engine says {giant.get('expected_decision')}"
            elif not met:
                phases = {k: v for k, v in (giant.get("breakdown") or {}).items() if v is not None}
                longest = sorted(phases.items(), key=lambda kv: -kv[1])[:2]
                where = ", ".join(f"{k} {v:g} s" for k, v in longest) if longest else "see the section"
                note = (
                    f"{seconds / GIANT_DECISION_GOAL:.2f}x short; bound: the restart's longest phases: {where} "
                    f"(the restore read {giant.get('restore_records')} records in {giant.get('restore_s')} s)"
                )
            rows.append((name, f"{seconds} s, {'right' if right else 'wrong'}", met, note))
    storm = shapes.get("storm") or {}
    if storm:
        terms = storm["terms"]
        count = storm.get("term_ended", 0)
        twice = storm.get("term_ended_records", 0) - count
        met = count == terms and twice == 0
        note = ""
        if not met:
            note = f"{terms - count:,} missing" + (f", {twice:,} decided twice" if twice else "")
            if storm.get("timed_out"):
                note += f" when the wait ended; {_v(storm.get('aborts'), '{:,.0f}')} aborted transactions"
            if storm.get("error"):
                note += f"; {storm['error']}"
        rows.append((f"month-end storm: {terms:,} term ends, each decided TERM_ENDED once", f"{count:,}", met, note))
        goal_s = STORM_SECONDS_GOAL
        last = storm.get("ready_to_last_s")
        note = ""
        met_s = False if storm.get("timed_out") else (None if last is None else last <= goal_s)
        if storm.get("timed_out"):
            note = "not every term end was decided (see the row above)"
        elif met_s is False and last:
            note = (
                f"{last / goal_s:.2f}x short; bound: the firing's transactions ({storm.get('transactions')}, the "
                f"largest {storm.get('largest_transaction_records')} records): the engine's work per term end, then "
                "the produce and commit of each"
            )
        rows.append(
            (
                f"month-end storm: readiness → last TERM_ENDED visible ≤ {goal_s:g} s",
                "n/a" if last is None else f"{last} s",
                met_s,
                note,
            )
        )
        largest = storm.get("largest_transaction_records")
        upper = storm.get("largest_transaction_upper_bound")
        if upper is not None and (largest is None or upper > largest):
            largest = upper  # only a sum of several is known to be at least this large: take it as the bound
        met_t = None if largest is None else largest <= STORM_TRANSACTION_GOAL
        note = ""
        if met_t is False and largest:
            note = (
                f"{largest / STORM_TRANSACTION_GOAL:.2f}x short; bound: every due deadline fires in one batch, so "
                "one transaction carries every term end's decision, status and state (no timer slice)"
            )
        rows.append(
            (
                f"month-end storm: largest transaction ≤ {STORM_TRANSACTION_GOAL:,} records",
                "n/a" if largest is None else f"{largest:,} records",
                met_t,
                note,
            )
        )
    return rows


def _v(x: Any, fmt: str = "{:,}") -> str:
    return "n/a" if x is None else fmt.format(x)


def render_sections(shapes: dict[str, Any]) -> list[str]:
    """The Markdown sections of the CSP data shapes (none for a section not run)."""
    lines: list[str] = []
    if shapes.get("error"):
        lines += ["", "## CSP data shapes", "", f"Not measured: {shapes['error']}."]
    accounts = shapes.get("accounts") or {}
    sizes = accounts.get("sizes") or []
    if sizes:
        lines += [
            "",
            "## Changelog bytes per input event",
            "",
            "Accounts of the realistic shape (an enterprise buying profile) built through the exactly-once "
            "service, then further events on each, sent one at a time so that each is a transaction of its own: "
            "in turn a new license purchase, a renewal and a cancellation of an open subscription. Bytes are the "
            "keys and values of the changelog records appended meanwhile, read with a read_committed consumer "
            "from the offsets before the first event to the end; divided by the events sent.",
            "",
            "| account subscriptions | events sent | changelog records | changelog bytes | bytes / event | seconds |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sizes:
            if "bytes_per_event" in r:
                lines.append(
                    f"| {r['subscriptions']:,} | {r['events']:,} | {r['changelog_records']:,} | "
                    f"{r['changelog_bytes']:,} | {r['bytes_per_event']:,} | {r['seconds']} |"
                )
            elif "error" in r:
                lines.append(f"| {r['size']:,} | n/a | n/a | n/a | n/a | n/a |")
        lines += ["", f"Not processed: {accounts['error']}."] if accounts.get("error") else []
    giant = accounts.get("giant") or {}
    if accounts and giant.get("process_s") is None:
        lines += [
            "",
            f"## One account of {giant.get('subscriptions', 0):,} subscriptions",
            "",
            f"Not measured: {giant.get('error') or accounts.get('error') or 'the account was not built'}.",
        ]
    elif giant.get("process_s") is not None:
        lines += [
            "",
            f"## One account of {giant['subscriptions']:,} subscriptions",
            "",
            f"Its {giant['events']:,} events published at once to the running exactly-once service (the same as "
            "the section above) and timed to its group's committed offsets covering them; then the service is "
            "SIGKILLed and started again at once (static membership), and a cancellation of one of the account's "
            "subscriptions is sent: the time to its decision (read_committed), and that decision against the pure "
            "engine's for the same history. The restore reads every account the service held (those above too).",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| published → account processed (s) | {giant['process_s']} |",
            f"| changelog records restored | {_v(giant.get('restore_records'))} |",
            f"| restore seconds | {_v(giant.get('restore_s'))} |",
            f"| restart → next decision for the account (s) | {_v(giant.get('restart_to_next_decision_s'))} |",
            f"| next decision | {' / '.join(giant.get('next_decision') or ['n/a'])} |",
            f"| decided as the engine decides it | {'yes' if giant.get('decided_right') else 'no'} |",
            *(f"| restart phase: {k} (s) | {_v(v)} |" for k, v in (giant.get("breakdown") or {}).items()),
        ]
        lines += ["", f"After the restart: {giant['error']}."] if giant.get("error") else []
    storm = shapes.get("storm") or {}
    if storm:
        metric = storm.get("largest_transaction_metric")
        lines += [
            "",
            "## Month-end storm",
            "",
            f"{storm['terms']:,} license terms over {storm['accounts']:,} accounts, all ending at "
            f"{storm['deadline']}, in state last evaluated one second before that instant: built offline with the "
            f"store ({storm['state_records_written']:,} changelog records in {storm['state_build_s']} s), written "
            "to the service's changelog before it starts, with no input at all. The service restores them and "
            "every deadline is due at once. The largest transaction is the service's own "
            "`multichannel_transaction_records_max`; without it, transactions and their records are read from the "
            f"service's counters (committed transactions, records written to every topic) every {SCRAPE_S:g} s: an "
            "interval with one commit gives that transaction's size exactly; one with several only their sum. "
            "Beside it, "
            "the largest run of records between two transaction markers on one partition of the decision, status "
            "or changelog topic (a read_uncommitted reader sees a marker as a gap in the offsets)."
            + (
                ""
                if metric is not None
                else f" The service has no `{TRANSACTION_RECORDS_METRIC}` histogram yet; when it has, its largest "
                "bucket is shown beside."
            ),
            "",
            "| measure | value |",
            "|---|---:|",
            f"| changelog records restored | {_v(storm.get('restore_records'))} |",
            f"| restore seconds | {_v(storm.get('restore_s'))} |",
            f"| service start → readiness (s) | {_v(storm.get('start_to_ready_s'))} |",
            f"| readiness → first TERM_ENDED visible (s) | {_v(storm.get('ready_to_first_s'))} |",
            f"| readiness → last TERM_ENDED visible (s) | {_v(storm.get('ready_to_last_s'))} |",
            f"| TERM_ENDED decisions (distinct subscriptions / records) | {storm.get('term_ended', 0):,} / "
            f"{storm.get('term_ended_records', 0):,} |",
            f"| transactions committed while it fired | {_v(storm.get('transactions'))} |",
            f"| records written meanwhile (every topic) | {_v(storm.get('records_written'))} |",
            f"| largest transaction (records) | {_v(storm.get('largest_transaction_records'))} |",
            *(
                [f"| several commits between two reads: their records, at most | {upper:,} |"]
                if (upper := storm.get("largest_transaction_upper_bound"))
                else []
            ),
            f"| largest run between markers on one partition (records) | {_v(storm.get('largest_partition_run'))} |",
            *([f"| largest transaction, `{TRANSACTION_RECORDS_METRIC}` bucket | ≤ {metric:,.0f} |"] if metric else []),
            f"| aborted transactions | {_v(storm.get('aborts'), '{:,.0f}')} |",
        ]
    return lines


# ---------------------------------------------------------------------------------- driver
def run_shapes(
    variants: Variants, settings: Settings, tag: str, opts: ShapeOptions, *, accounts: bool = True
) -> dict[str, Any]:
    """Both measurements of the service on CSP data shapes (`accounts=False`: the storm alone); each
    section's seconds in `seconds`."""
    out: dict[str, Any] = {"options": {**opts.__dict__, "sizes": list(opts.sizes)}, "seconds": {}}
    started = time.monotonic()
    if accounts:
        out["accounts"] = measure_big_accounts(variants, settings, tag, opts)
        out["seconds"]["accounts"] = round(time.monotonic() - started)
        _drop(settings, f"{tag}-accounts")
    started = time.monotonic()
    out["storm"] = measure_storm(variants, settings, tag, opts)
    out["seconds"]["storm"] = round(time.monotonic() - started)
    _drop(settings, f"{tag}-storm")
    return out


def _drop(settings: Settings, label: str) -> None:
    """A finished section's topics, its own input and partner topics too: later sections should not share
    the broker with them."""
    drop_topics(settings, label, f"bench-{label}-input", f"bench-{label}-partners")


def main() -> None:
    """`python -m benchmarks.shapes [--quick]`: the CSP data shape sections alone, on the local stack
    (started when no broker is configured); prints their Markdown and writes it with the JSON under --out."""
    import argparse
    from contextlib import ExitStack
    from dataclasses import replace

    from benchmarks.suite import QUICK_SHAPES, BenchOptions, _slug
    from config.endpoints import resolve
    from config.settings import PROJECT_ROOT
    from deploy.local.stack import local_stack

    parser = argparse.ArgumentParser(prog="python -m benchmarks.shapes", description=main.__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a trial of a minute or two")
    parser.add_argument("--out", type=str, default=str(PROJECT_ROOT / ".cache" / "bench" / "shapes"))
    parser.add_argument("--sizes", type=str, help="account sizes, comma-separated (e.g. 10,1000)")
    parser.add_argument("--giant", type=int, help="subscriptions of the account that is SIGKILLed and restored")
    parser.add_argument("--further-events", type=int, help="events sent to each account once it is built")
    parser.add_argument("--storm-terms", type=int, help="term ends of the month-end storm")
    parser.add_argument("--storm-accounts", type=int, help="accounts the storm's terms are spread over")
    parser.add_argument("--no-accounts", action="store_true", help="only the storm")
    args = parser.parse_args()
    shape_opts = QUICK_SHAPES if args.quick else ShapeOptions()
    given = {
        "sizes": tuple(int(x) for x in args.sizes.split(",")) if args.sizes else None,
        "giant": args.giant,
        "further_events": args.further_events,
        "storm_terms": args.storm_terms,
        "storm_accounts": args.storm_accounts,
    }
    shape_opts = replace(shape_opts, **{k: v for k, v in given.items() if v is not None})
    base = Settings(auto_register_schemas=True)
    opts = BenchOptions(shapes=shape_opts)
    with ExitStack() as stack:
        if not base.bootstrap_servers:
            stack.enter_context(local_stack(base.cache_dir, base.local_state_dir))
        s = resolve(base).model_copy(update={"input_partitions": opts.partitions, "output_partitions": opts.partitions})
        variants = Variants(s, replace(opts, work_dir=opts.work_dir), None)
        result = run_shapes(variants, s, _slug(uuid.uuid4().hex[:6]), shape_opts, accounts=not args.no_accounts)
    from pathlib import Path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "shapes.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    rows = shape_targets(result)
    text = "\n".join(
        [
            *render_sections(result),
            "",
            "| target | measured | met | short by, and what bounds it |",
            "|---|---:|:---:|---|",
            *[
                f"| {n} | {v} | {'n/a' if m is None else ('yes' if m else '**no**')} | {note} |"
                for n, v, m, note in rows
            ],
        ]
    )
    (out / "shapes.md").write_text(text + "\n")
    print(text)
    print(f"seconds per section: {result['seconds']}")


if __name__ == "__main__":
    main()

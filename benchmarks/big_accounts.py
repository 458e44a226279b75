"""Changelog bytes per input event at several account sizes, and one giant account SIGKILLed and restored."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.common import BenchError, ShapeOptions, log_event
from benchmarks.recovery import recovery_breakdown
from benchmarks.shape_events import EventDict, account_events, encode_events, further_events
from benchmarks.shape_probes import Committed, Stuck, decision_reader, topic_ends
from benchmarks.variants import Launch, Variants, running
from benchmarks.workload import produce_all
from config.registry import registry_client
from config.settings import Settings
from consumers.serde import Decoder
from consumers.topics import ensure_topics
from multichannel.engine import Classifier
from multichannel.parse import parse_event
from multichannel.records import SubscriptionDecision
from producers.serde import EventEncoder
from schemas import SUBSCRIPTION_DECISION


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


class _AccountsRun:
    """The section's exactly-once service: its input and partner topics, its launch, a producer of one event
    at a time, and the group's committed offsets."""

    def __init__(self, variants: Variants, settings: Settings, tag: str, opts: ShapeOptions) -> None:
        self.opts = opts
        self.label = label = f"{tag}-accounts"
        self.topic = topic = f"bench-{label}-input"
        self.partner_topic = partner_topic = f"bench-{label}-partners"
        ensure_topics(
            settings.kafka_client_config(),
            {topic: (settings.input_partitions, "delete"), partner_topic: (settings.partner_partitions, "compact")},
            1,
        )
        self.launch, self.s = variants.service(
            label, topic, "exactly_once_v2", partner_topic=partner_topic, static_membership=True
        )
        s = self.s
        self.encoder = EventEncoder.for_settings(s, registry_client(s), auto_register=True)
        self.committed = Committed(s, self.launch.group, topic)
        self.producer = Producer({**s.kafka_client_config(), "linger.ms": 0, "enable.idempotence": True})

    def send(self, event: EventDict) -> tuple[int, int]:
        """Produce one event; its partition and the offset after it."""
        delivered: list[tuple[int, int]] = []
        key, value = encode_events(self.encoder, [event])[0]

        def report(_err: Any, msg: Any) -> None:
            delivered.append((msg.partition() or 0, (msg.offset() or 0) + 1))

        self.producer.produce(self.topic, value=value, key=key, on_delivery=report)
        self.producer.flush(10)
        if not delivered:
            raise BenchError("an event could not be published")
        return delivered[0]

    def build(self, size: int, events: list[EventDict], proc: Any, row: dict[str, Any]) -> None:
        """The account's events published at once and timed to their commit; then, for a size of
        `opts.sizes`, the further events one at a time and the changelog bytes they add (into `row`)."""
        s, topic = self.s, self.topic
        stuck = Stuck(self.launch.log)
        t0 = time.monotonic()
        produce_all(s, topic, encode_events(self.encoder, events))
        self.committed.wait(topic_ends(s, topic, s.input_partitions), proc, 60 + len(events) / 100, stuck=stuck)
        row["build_s"] = round(time.monotonic() - t0, 2)
        row["subscriptions"] = len({e["subscription_id"] for e in events if "subscription_id" in e})
        if size not in self.opts.sizes:
            return
        changelog_before = topic_ends(s, s.changelog_topic, s.input_partitions)
        more = further_events(events, self.opts.further_events, f"{self.label}-more-{size}")
        t0 = time.monotonic()
        for event in more:
            partition, after = self.send(event)
            self.committed.wait({partition: after}, proc, 60, poll_s=0.005, stuck=stuck)
        row["seconds"] = round(time.monotonic() - t0, 2)
        records, size_bytes = changelog_bytes(
            s, s.changelog_topic, changelog_before, topic_ends(s, s.changelog_topic, s.input_partitions)
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

    def restart(self, giant: dict[str, Any], partners: list[EventDict], events: list[EventDict], killed: float) -> None:
        """The service started again after the SIGKILL, and a cancellation on the giant account: its restore,
        the time to the decision, and that decision against the pure engine's (into `giant`)."""
        s, launch = self.s, self.launch
        restart_log = launch.log.with_name(f"{self.label}-restart.log")
        restart = Launch(launch.argv, launch.env, launch.group, launch.decision_topic, restart_log)
        cancel = next(
            e for e in further_events(events, 3, f"{self.label}-probe") if e["event_type"] == "subscription_cancelled"
        )
        expected = expected_decision(partners, events, cancel)
        reader, _ends_now = decision_reader(s)
        probe = _Probe(reader, Decoder(registry_client(s), SUBSCRIPTION_DECISION), {})
        try:
            with running(restart) as proc:
                restarted, restarted_wall = time.monotonic(), time.time()
                self.send(cancel)
                deadline = time.monotonic() + 120 + giant["events"] / 1000
                while cancel["event_id"] not in probe.seen:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        giant["error"] = f"no decision for the account after the restart; see {restart_log}"
                        return
                    probe.read()
                seen_at, verdict, _sid = probe.seen[cancel["event_id"]]
                again = log_event(restart_log, "partitions_restored") or {}
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
                        "breakdown": recovery_breakdown(
                            restart_log, restarted_wall, restarted_wall + seen_at - restarted
                        ),
                    }
                )
        finally:
            reader.close()

    def close(self) -> None:
        self.committed.close()
        self.producer.flush(10)


def measure_big_accounts(variants: Variants, settings: Settings, tag: str, opts: ShapeOptions) -> dict[str, Any]:
    """One exactly-once service on an input topic of its own. The accounts of `opts.sizes` (and one of
    `opts.giant` if it is not among them), smallest first, are each built (their events published at once,
    timed to the group's committed offsets covering them), then sent `opts.further_events` events one at a
    time (each its own transaction) whose changelog bytes are counted. Then the service is SIGKILLed and
    started again at once, and a cancellation on the giant account is sent: restore, time to its decision,
    and that decision against the pure engine's. A size the service cannot process ends the section with its
    error (the rows measured so far are kept)."""
    run = _AccountsRun(variants, settings, tag, opts)
    built: dict[int, tuple[list[EventDict], list[EventDict]]] = {}
    result: dict[str, Any] = {"giant": {"subscriptions": opts.giant}, "sizes": []}
    try:
        with running(run.launch) as proc:
            for size in sorted({*opts.sizes, opts.giant}):
                partners, events = account_events(size, f"C-size-{size}", opts.seed)
                if not built:
                    produce_all(run.s, run.partner_topic, encode_events(run.encoder, partners))
                row: dict[str, Any] = {"size": size, "events_built": len(events)}
                result["sizes"].append(row)
                try:
                    run.build(size, events, proc, row)
                    built[size] = partners, events
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
        run.restart(giant, *built[opts.giant], killed)
    finally:
        run.close()
    return result

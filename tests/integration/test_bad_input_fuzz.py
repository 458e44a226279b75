"""Fuzzed bad input through a real broker and registry.

Hypothesis draws a seed (kept in its example database, so a failure replays); the seed makes a
stream of good events interleaved with bad records of every kind: random bytes, Avro cut short,
a wrong magic byte, unknown, non-Avro and unrelated schema ids, huge strings in otherwise valid
events, timestamps out of range, a 1 MB value, a value beyond the dead-letter limit, keys that are
not UTF-8 or absent, null values, missing and garbage headers, events on the wrong topic. One
service process reads it all; every bad record must be exactly one dead letter with its original
bytes and a contract reason, every good one must come out as `classify` says, and the service must
stay up, ready and within its memory.
The same seeds make JSON-lines files for `multichannel produce` and the publishers.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import Schema
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from config.registry import registry_client
from config.settings import Settings
from consumers.dead_letters import dead_letter_limit
from consumers.messages import Headers
from consumers.serde import Decoder
from consumers.topics import ensure_topics
from multichannel.errors import REASON_CODES, InvalidEvent
from multichannel.parse import MAX_ID_CHARS, event_to_dict, parse_event
from producers.publisher import EventPublisher
from producers.serde import EventEncoder
from schemas import PARTNER_EVENT, SUBSCRIPTION_EVENT, SchemaName, schema_str
from schemas.wire import header
from tests.integration.pipeline import (
    PROJECT_ROOT,
    ServiceProcess,
    by_account,
    by_subscription,
    expected_outputs,
    read_outputs,
    read_topic,
    settings_env,
    wait_until_processed,
)
from tests.integration.test_service import split_partner_first, workload

SettingsFactory = Callable[..., Settings]

FUZZ = settings(
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # a shrink would rerun a whole pipeline per step
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
MIB = 1024 * 1024
BARE_LONG_TIMESTAMPS = parse_schema(
    {
        **json.loads(schema_str(SUBSCRIPTION_EVENT)),
        "fields": [
            {**f, "type": "long"} if f["name"] == "occurred_at" else f
            for f in json.loads(schema_str(SUBSCRIPTION_EVENT))["fields"]
        ],
    }
)
"""The subscription schema with `occurred_at` as a plain long: the same bytes, any value."""
RSS_GROWTH_BOUND = 150 * MIB
"""How much more the service may hold after a flood three times the warm-up's size (librdkafka
alone may prefetch 64 MiB of input)."""


@dataclass
class Sent:
    """One record as published: where it landed, and the dead-letter reason it must get (None: good;
    "" : any contract reason, for random bytes)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    reason: str | None
    kind: str
    coordinates: tuple[str, int, int] | None = None


@dataclass
class Corpus:
    """What a seed publishes: good events (contract dicts) and bad records, in one interleaved order."""

    partner_first: list[Sent] = field(default_factory=list)
    warm_up: list[Sent] = field(default_factory=list)
    flood: list[Sent] = field(default_factory=list)
    good_events: list[dict[str, Any]] = field(default_factory=list)


class BadRecords:
    """Bad records of every kind, made from one seeded random generator."""

    def __init__(self, rng: random.Random, settings: Settings, encoder: EventEncoder, foreign_ids: list[int]) -> None:
        self.rng = rng
        self.s = settings
        self.encoder = encoder
        self.foreign_ids = foreign_ids
        self.n = 0

    def _event(self, **changes: Any) -> dict[str, Any]:
        self.n += 1
        event: dict[str, Any] = {
            "event_type": "subscription_purchased",
            "event_id": f"bad-{self.n}",
            "occurred_at": datetime(2026, 5, 1, tzinfo=UTC),
            "partner_id": "P-fuzz",
            "customer_id": f"C-fuzz-{self.n}",
            "subscription_id": f"S-fuzz-{self.n}",
            "offer_id": "O",
            "billing_model": "usage",
            "channel": "microsoft_direct",
            "seller_partner_id": None,
            "quantity": None,
            "term_start": None,
            "term_end": None,
        }
        event.update(changes)
        return event

    def _valid_value(self, **changes: Any) -> tuple[bytes, bytes]:
        event = self._event(**changes)
        return event["customer_id"].encode(), self.encoder.encode_subscription_event(event)

    def _partner_value(self, **changes: Any) -> tuple[bytes, bytes]:
        self.n += 1
        event: dict[str, Any] = {
            "event_type": "partner_program_changed",
            "event_id": f"bad-{self.n}",
            "occurred_at": datetime(2026, 5, 1, tzinfo=UTC),
            "partner_id": f"C-fuzz-{self.n}",
            "program": "csp_direct",
            "indirect_provider_ids": [],
            **changes,
        }
        return event["partner_id"].encode(), self.encoder.encode_partner_event(event)

    def _headers(self) -> list[tuple[str, bytes | None]]:
        rng = self.rng
        choice = rng.randrange(5)
        if choice == 0:
            return []
        if choice == 1:
            return [("trace", rng.randbytes(rng.randrange(40))), ("empty", None)]
        if choice == 2:
            return [("error.reason", b"SPOOFED"), ("source.topic", b"elsewhere")]
        if choice == 3:
            return [("h", b"1"), ("h", b"2"), ("\u00e9t\u00e9", rng.randbytes(8))]
        return [(f"x{i}", rng.randbytes(rng.randrange(100))) for i in range(rng.randrange(1, 20))]

    def _sent(self, kind: str, key: bytes | None, value: bytes | None, reason: str, topic: str = "") -> Sent:
        return Sent(topic or self.s.subscription_topic, key, value, self._headers(), reason, kind)

    def one(self, kind: str) -> Sent:
        rng = self.rng
        if kind == "random bytes":
            return self._sent(kind, rng.randbytes(rng.randrange(12)), rng.randbytes(rng.randrange(300)), "")
        if kind == "truncated avro":
            key, value = self._valid_value()
            return self._sent(kind, key, value[: rng.randrange(1, len(value))], "SCHEMA_MISMATCH")
        if kind == "wrong magic byte":
            key, value = self._valid_value()
            return self._sent(kind, key, bytes([rng.randrange(1, 256)]) + value[1:], "SCHEMA_MISMATCH")
        if kind == "unknown schema id":
            key, value = self._valid_value()
            unknown = rng.randrange(2_000_000_000, 4_000_000_000).to_bytes(4, "big")
            return self._sent(kind, key, value[:1] + unknown + value[5:], "SCHEMA_MISMATCH")
        if kind == "foreign schema id":
            key, value = self._valid_value()
            foreign = rng.choice(self.foreign_ids).to_bytes(4, "big")
            return self._sent(kind, key, value[:1] + foreign + value[5:], "SCHEMA_MISMATCH")
        if kind == "huge string":
            size = rng.choice([MAX_ID_CHARS + 1, rng.randrange(300, 300_000)])
            name = rng.choice(["event_id", "partner_id", "customer_id", "subscription_id", "offer_id", "event_type"])
            key, value = self._valid_value(**{name: "\u00e9" * size})
            if name == "customer_id":
                key = ("\u00e9" * size).encode()
            return self._sent(kind, key, value, "UNKNOWN_EVENT_TYPE" if name == "event_type" else "INVALID_FIELD")
        if kind == "invalid field":
            change = rng.choice(
                [{"event_id": " "}, {"billing_model": "UNKNOWN"}, {"channel": "csp"}, {"billing_model": "license"}]
            )
            key, value = self._valid_value(**change)
            return self._sent(kind, key, value, "INVALID_FIELD")
        if kind == "unknown event type":
            key, value = self._valid_value(event_type=rng.choice(["subscription_paused", "", "[/bold] :x:"]))
            return self._sent(kind, key, value, "UNKNOWN_EVENT_TYPE")
        if kind == "timestamp out of range":  # occurred_at written as a bare long beyond year 9999
            event = self._event(occurred_at=rng.choice([2**62, -(2**62), 253_402_300_800_000]))
            body = io.BytesIO()
            schemaless_writer(body, BARE_LONG_TIMESTAMPS, event)
            value = header(self.encoder.subscription.schema_id) + body.getvalue()
            return self._sent(kind, event["customer_id"].encode(), value, "SCHEMA_MISMATCH")
        if kind == "key not utf-8":
            _key, value = self._valid_value()
            return self._sent(kind, b"\xff\xfe" + rng.randbytes(4), value, "KEY_MISMATCH")
        if kind == "no key":
            return self._sent(kind, None, self._valid_value()[1], "KEY_MISMATCH")
        if kind == "no value":
            return self._sent(kind, rng.randbytes(5), None, "SCHEMA_MISMATCH")
        if kind == "partner event on the subscription topic":
            partner_id, value = self._partner_value()
            return self._sent(kind, partner_id, value, "SCHEMA_MISMATCH")
        if kind == "bad partner record":  # the compacted topic needs a key
            topic = self.s.partner_topic
            choice = rng.randrange(5)
            if choice == 0:
                return self._sent(kind, b"P-fuzz", rng.randbytes(rng.randrange(1, 200)), "SCHEMA_MISMATCH", topic)
            if choice == 1:
                return self._sent(kind, b"P-fuzz", self._valid_value()[1], "SCHEMA_MISMATCH", topic)
            if choice == 2:
                return self._sent(kind, rng.randbytes(6) or b"x", None, "SCHEMA_MISMATCH", topic)
            if choice == 3:
                return self._sent(kind, b"\xc3\x28P", self._partner_value()[1], "KEY_MISMATCH", topic)
            key, value = self._partner_value(partner_id="P" * rng.randrange(MAX_ID_CHARS + 1, 100_000))
            return self._sent(kind, key, value, "INVALID_FIELD", topic)
        if kind == "1 MB value":
            if rng.random() < 0.5:
                return self._sent(kind, b"C-big", b"\x00" + rng.randbytes(1_040_000), "")
            key, value = self._valid_value(subscription_id=rng.randbytes(520_000).hex())
            return self._sent(kind, key, value, "INVALID_FIELD")
        if kind == "beyond the dead-letter limit":  # compressible, so the input topic takes it
            key, value = self._valid_value(offer_id="a" * (self.s.dead_letter_max_bytes + MIB))
            return self._sent(kind, key, value, "INVALID_FIELD")
        raise AssertionError(kind)


SMALL_KINDS = (
    "random bytes",
    "timestamp out of range",
    "truncated avro",
    "wrong magic byte",
    "unknown schema id",
    "foreign schema id",
    "huge string",
    "invalid field",
    "unknown event type",
    "key not utf-8",
    "no key",
    "no value",
    "partner event on the subscription topic",
    "bad partner record",
)


def register_foreign_schemas(settings: Settings) -> list[int]:
    """Ids of schemas in the real registry that are not our events: Protobuf, JSON Schema, another Avro record."""
    client = registry_client(settings)
    prefix = settings.application_id
    return [
        client.register_schema(f"{prefix}-proto", Schema('syntax = "proto3"; message M { string a = 1; }', "PROTOBUF")),
        client.register_schema(
            f"{prefix}-json",
            Schema('{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}', "JSON"),
        ),
        client.register_schema(
            f"{prefix}-other",
            Schema('{"type": "record", "name": "Other", "fields": [{"name": "x", "type": "long"}]}', "AVRO"),
        ),
    ]


def make_corpus(seed: int, settings: Settings, foreign_ids: list[int]) -> Corpus:
    rng = random.Random(seed)
    encoder = EventEncoder.for_settings(settings, registry_client(settings), auto_register=True)
    bad = BadRecords(rng, settings, encoder, foreign_ids)
    partners, rest = split_partner_first(workload(seed=rng.randrange(1000), customers=60))
    corpus = Corpus(good_events=partners + rest)
    corpus.partner_first = [_good(settings, encoder, e, []) for e in partners]
    half = len(rest) // 2
    for part, events, bad_count, big in (
        (corpus.warm_up, rest[:half], 40, ["1 MB value"]),
        (corpus.flood, rest[half:], 120, ["1 MB value"] * 3 + ["beyond the dead-letter limit"]),
    ):
        records = [_good(settings, encoder, e, bad._headers() if rng.random() < 0.3 else []) for e in events]
        kinds = [*SMALL_KINDS, *(rng.choice(SMALL_KINDS) for _ in range(bad_count - len(SMALL_KINDS))), *big]
        for kind in kinds:
            records.insert(rng.randrange(len(records) + 1), bad.one(kind))
        part.extend(records)
    return corpus


def _good(settings: Settings, encoder: EventEncoder, event: dict[str, Any], headers: list[Any]) -> Sent:
    parsed = parse_event(event)
    if event["event_type"] == "partner_program_changed":
        topic, key, value = (
            settings.partner_topic,
            event["partner_id"],
            encoder.encode_partner_event(event_to_dict(parsed)),
        )
    else:
        topic, key = settings.subscription_topic, event["customer_id"]
        value = encoder.encode_subscription_event(event_to_dict(parsed))
    return Sent(topic, key.encode(), value, headers, None, "good")


def publish_sent(settings: Settings, records: list[Sent]) -> None:
    """Publish in order and note where each record landed."""
    producer = Producer(
        {
            **settings.kafka_client_config(),
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",  # a value beyond the dead-letter limit fits the input topic compressed
            "message.max.bytes": settings.dead_letter_max_bytes + 2 * MIB,
            "partitioner": "murmur2_random",
        }
    )

    def landed(sent: Sent) -> Callable[[KafkaError | None, Message], None]:
        def report(err: KafkaError | None, msg: Message) -> None:
            assert err is None, f"{sent.kind}: {err}"
            sent.coordinates = (msg.topic() or "", msg.partition() or 0, msg.offset() or 0)

        return report

    for sent in records:
        headers: Headers = list(sent.headers)
        producer.produce(sent.topic, key=sent.key, value=sent.value, headers=headers, on_delivery=landed(sent))
        producer.poll(0)
    assert producer.flush(60) == 0
    assert all(s.coordinates is not None for s in records)


def rss_bytes(svc: ServiceProcess) -> int:
    assert svc.proc is not None
    for line in Path(f"/proc/{svc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _headers(msg: Message) -> list[tuple[str, bytes | None]]:
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]


def _coordinates(msg: Message) -> tuple[str, int, int]:
    h = dict(_headers(msg))  # the last of repeated names: the service's own headers come last
    assert h["source.topic"] is not None and h["source.partition"] is not None and h["source.offset"] is not None
    return h["source.topic"].decode(), int(h["source.partition"]), int(h["source.offset"])


def audit_dead_letters(dead: list[Message], sent: list[Sent]) -> Counter[str]:
    """Every bad record is exactly one dead letter with its key, value and headers; returns reasons by kind."""
    bad = {s.coordinates: s for s in sent if s.reason is not None}
    by_source: dict[tuple[str, int, int], list[Message]] = {}
    for msg in dead:
        by_source.setdefault(_coordinates(msg), []).append(msg)
    assert set(by_source) == set(bad), (
        f"dead letters for good records: {len(set(by_source) - set(bad))}, "
        f"bad records without one: {[bad[c].kind for c in set(bad) - set(by_source)]}"
    )
    reasons: Counter[str] = Counter()
    for coordinates, msgs in by_source.items():
        s = bad[coordinates]
        assert len(msgs) == 1, f"{s.kind}: {len(msgs)} dead letters"
        msg = msgs[0]
        headers = _headers(msg)
        h = dict(headers)
        reason = (h["error.reason"] or b"").decode()
        assert reason in REASON_CODES, f"{s.kind}: {reason}"
        assert s.reason in ("", reason), f"{s.kind}: {reason}, want {s.reason}: {h['error.message']!r}"
        assert h["error.message"], s.kind
        assert msg.key() == s.key, s.kind
        if "error.truncated" in h:
            assert s.kind == "beyond the dead-letter limit" and h["error.truncated"] == b"value"
            assert h["source.value.bytes"] == str(len(s.value or b"")).encode()
            assert (s.value or b"").startswith(msg.value() or b"x") and len(msg.value() or b"") > MIB
        else:
            assert s.kind != "beyond the dead-letter limit"
            assert msg.value() == s.value, s.kind
        assert headers[: len(s.headers)] == s.headers, f"{s.kind}: the record's own headers come first, unchanged"
        reasons[f"{s.kind}: {reason}"] += 1
    return reasons


@settings(FUZZ, max_examples=3)
@given(seed=SEEDS)
def test_every_fuzzed_bad_record_is_one_dead_letter_and_the_service_stays_up(
    settings_factory: SettingsFactory, tmp_path_factory: pytest.TempPathFactory, seed: int
) -> None:
    """Warm-up, then a flood three times its size: each bad record is exactly one dead letter with
    its original key, value and headers and a contract reason (a value beyond the dead-letter limit
    keeps its first bytes and says so), the good events give `classify`'s decisions, and the service
    is alive and ready with its memory within a bound."""
    note(f"seed {seed}")
    settings = settings_factory(batch_size=200)
    corpus = make_corpus(seed, settings, register_foreign_schemas(settings))
    publish_sent(settings, corpus.partner_first)
    svc = ServiceProcess(settings, tmp_path_factory.mktemp("fuzz") / "service.log").start()
    try:
        svc.wait_ready()
        publish_sent(settings, corpus.warm_up)
        wait_until_processed(settings, 60, [svc])
        warm_rss = rss_bytes(svc)
        publish_sent(settings, corpus.flood)
        wait_until_processed(settings, 90, [svc])
        flood_rss = rss_bytes(svc)
        base = svc.wait_ready(10)
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
            assert resp.status == 200
        assert svc.terminate() == 0, svc.log_tail()
    finally:
        if svc.alive():
            svc.kill()
    note(f"RSS after warm-up {warm_rss / MIB:.0f} MiB, after the flood {flood_rss / MIB:.0f} MiB")
    assert flood_rss - warm_rss < RSS_GROWTH_BOUND, (warm_rss, flood_rss)
    assert "transaction_abort" not in svc.log_path.read_text(), "no batch needed a retry"
    decisions, statuses, dead = read_outputs(settings)
    reasons = audit_dead_letters(dead, corpus.partner_first + corpus.warm_up + corpus.flood)
    note(str(sorted(reasons.items())))
    want_d, want_s = expected_outputs(corpus.good_events)
    assert by_subscription(decisions) == by_subscription(want_d)
    assert by_account(statuses) == by_account(want_s)
    assert len(decisions) == len(want_d) > 100


# ---------------------------------------------------------------------------------- produce and publishers
def bad_lines(rng: random.Random) -> Iterator[tuple[bytes, str]]:
    """(line, reason) of every kind a JSON-lines file can go wrong in."""
    event: dict[str, Any] = {
        "event_type": "relationship_accepted",
        "event_id": "line-bad",
        "occurred_at": "2026-03-01T00:00:00Z",
        "partner_id": "P-fuzz",
        "customer_id": "C-fuzz",
    }
    yield b'{"event_type": "relationship_accepted", "event_id": ', "SCHEMA_MISMATCH"
    yield b"\x01" + rng.randbytes(rng.randrange(60)).replace(b"\n", b"").replace(b"\r", b""), "SCHEMA_MISMATCH"
    yield json.dumps(event).encode().replace(b"C-fuzz", b"C-\xff\xfe"), "SCHEMA_MISMATCH"
    yield b"[1, 2, 3]", "SCHEMA_MISMATCH"
    yield json.dumps({**event, "partner_id": 7}).encode(), "INVALID_FIELD"
    missing = rng.choice(["event_id", "occurred_at"])
    yield json.dumps({k: v for k, v in event.items() if k != missing}).encode(), "INVALID_FIELD"
    yield json.dumps({**event, "event_type": "subscription_paused"}).encode(), "UNKNOWN_EVENT_TYPE"
    yield json.dumps({**event, "event_type": "[/bold] [red]:smile:"}).encode(), "UNKNOWN_EVENT_TYPE"
    yield json.dumps({**event, "customer_id": "x" * rng.randrange(2 * MIB, 3 * MIB)}).encode(), "INVALID_FIELD"
    yield json.dumps({**event, "occurred_at": "0001-01-01T00:00:00+05:00"}).encode(), "INVALID_FIELD"
    purchase = {**event, "event_type": "subscription_purchased", "subscription_id": "S", "offer_id": "O"}
    yield json.dumps(purchase).encode(), "INVALID_FIELD"
    license_terms = {
        "billing_model": "license",
        "channel": "open",
        "term_start": "2026-01-01",
        "term_end": "2027-01-01",
    }
    yield json.dumps({**purchase, **license_terms, "quantity": 2**70}).encode(), "INVALID_FIELD"


def produce_file(seed: int, path: Path) -> tuple[list[bytes], dict[int, str]]:
    """A file of good lines (a workload) and bad lines interleaved; returns its lines and line number → reason."""
    rng = random.Random(seed)
    lines = [json.dumps(e).encode() for e in workload(seed=rng.randrange(1000), customers=25)]
    bad = list(bad_lines(rng))
    for line, _reason in bad:
        lines.insert(rng.randrange(len(lines) + 1), line)
    reasons: dict[int, str] = {}
    want = dict(bad)
    for number, line in enumerate(lines, start=1):
        if line in want:
            reasons[number] = want[line]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines, reasons


def published_event_ids(settings: Settings) -> Counter[str]:
    client = registry_client(settings)
    ids: Counter[str] = Counter()
    topics: tuple[tuple[str, SchemaName], ...] = (
        (settings.subscription_topic, SUBSCRIPTION_EVENT),
        (settings.partner_topic, PARTNER_EVENT),
    )
    for topic, schema in topics:
        for item in Decoder(client, schema).decode_batch(read_topic(settings, topic)):
            assert isinstance(item, dict)
            ids[item["event_id"]] += 1
    return ids


@settings(FUZZ, max_examples=2)
@given(seed=SEEDS)
def test_produce_and_publishers_reject_each_fuzzed_bad_line_and_deliver_every_good_one(
    settings_factory: SettingsFactory, tmp_path_factory: pytest.TempPathFactory, seed: int
) -> None:
    """`multichannel produce` prints one `line N: REASON: message` per bad line (in plain text, whatever
    the line quotes), exits 0 with the summary count, and every good line is on the broker exactly
    once; the publishers raise InvalidEvent for each bad line and deliver every good one."""
    note(f"seed {seed}")
    settings = settings_factory()
    path = tmp_path_factory.mktemp("produce") / "events.jsonl"
    lines, reasons = produce_file(seed, path)
    env = settings_env(settings) | {"COLUMNS": "80"}
    done = subprocess.run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "multichannel"), "produce", str(path)],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    reported = {
        int(line.split(":", 2)[0].removeprefix("line ")): line.split(":", 2)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("line ")
    }
    assert reported == reasons
    good = [line for number, line in enumerate(lines, start=1) if number not in reasons]
    good_ids = Counter(json.loads(line)["event_id"] for line in good)
    assert f"published {len(good)}, rejected {len(reasons)}, undelivered 0" in stderr
    assert published_event_ids(settings) == good_ids

    again = settings_factory()
    rejected: dict[int, str] = {}
    futures = []
    with EventPublisher(again, auto_register=True) as publisher:
        for number, line in enumerate(lines, start=1):
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise TypeError("not an object")
                futures.append(publisher.publish(obj))
            except (ValueError, TypeError):
                rejected[number] = "SCHEMA_MISMATCH"  # not JSON: the publisher takes objects
            except InvalidEvent as exc:
                rejected[number] = exc.reason
    assert rejected == reasons
    assert all(f.result(timeout=30) for f in futures)
    assert published_event_ids(again) == good_ids


def test_dead_letters_are_fitted_to_the_topic_limit_when_it_is_the_smaller(
    settings_factory: SettingsFactory,
) -> None:
    """A dead-letter topic created before the setting (the broker's 1 MiB default) lowers the limit the
    service fits dead letters to; a topic it cannot describe leaves the configured one."""
    settings = settings_factory()
    conf = settings.kafka_client_config()
    old_topic = f"{settings.dead_letter_topic}-old"
    ensure_topics(conf, {old_topic: (1, "delete")})
    admin, deadline = AdminClient(conf), time.monotonic() + 30
    while old_topic not in admin.list_topics(timeout=10).topics:  # each call is a broker round trip
        assert time.monotonic() < deadline, "the new topic never showed in the metadata"
    assert dead_letter_limit(conf, settings.dead_letter_topic, settings.dead_letter_max_bytes) == 4 * MIB
    assert dead_letter_limit(conf, old_topic, settings.dead_letter_max_bytes) == 1_048_588
    assert dead_letter_limit(conf, f"{settings.dead_letter_topic}-absent", 2 * MIB) == 2 * MIB

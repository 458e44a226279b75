"""A record the brokers refuse (larger than its topic takes) stops neither the batch nor the partition: its
account's events of the batch become RECORD_REFUSED dead letters, its changes of the batch are undone, and
the other accounts go on. Driven through `BatchProcessor.process` with fake records and codec (no broker)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError

from config.settings import Settings
from consumers.batch import BatchOutput, BatchProcessor, RefusedRecord
from consumers.commit import AtLeastOnce
from consumers.kafka_errors import RecordsRefused
from consumers.limits import OutputTopics, RecordLimits, process_within_limits, record_size, refused_accounts
from consumers.metrics import BatchTally
from consumers.store import AccountStore
from multichannel.engine import Classifier
from multichannel.errors import REASON_CODES, RecordRefused
from multichannel.model import BillingModel, Channel, PartnerProgramChanged, Program, SubscriptionPurchased
from tests.unit.test_at_least_once_order import _no_guard
from tests.unit.test_partner_table import FakeCodec

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 2, 1, tzinfo=UTC)
TOPICS = OutputTopics("decisions", "statuses", "changelog")
BIG = ("P1", "C-big")


class Record:
    """A consumed subscription record: its bytes stand for the event, which the codec hands through."""

    def __init__(self, event: Any, part: int, off: int) -> None:
        self.event, self.part, self.off = event, part, off

    def value(self) -> bytes:
        return f"avro:{self.event.event_id}".encode()

    def key(self) -> bytes:
        return str(self.event.customer_id).encode()

    def headers(self) -> list[tuple[str, bytes]]:
        return [("trace", b"t-1")]

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def partition(self) -> int:
        return self.part

    def offset(self) -> int:
        return self.off

    def topic(self) -> str:
        return "subs"


def purchase(cid: str, sid: str) -> SubscriptionPurchased:
    return SubscriptionPurchased(
        f"buy-{cid}-{sid}", T0, "P1", cid, sid, "O", BillingModel.LICENSE, Channel.OPEN, None, 1, date(2025, 1, 1),
        date(2027, 1, 1),
    )  # fmt: skip


class Codec(FakeCodec):
    def decode_subscription_batch(self, msgs: Any) -> list[Any]:
        return [m.event for m in msgs]


def processor() -> BatchProcessor:
    store = AccountStore(Classifier(), input_partitions=2, decode_legacy=lambda values: [])
    store.owned |= {0, 1}
    store.classifier.apply(PartnerProgramChanged("p1", T0, "P1", Program.CSP_DIRECT, ()), T0)
    store.commit()
    return BatchProcessor(
        store, Codec(), subscription_topic="subs", partner_topic="partners", dead_letter_limit=1 << 20
    )


def batch() -> list[Record]:
    """One partition: a small account, then an account with forty subscriptions, then another small one."""
    records = [Record(purchase("C-a", "S0"), 0, 0)]
    records += [Record(purchase(BIG[1], f"S{i:02d}"), 0, 1 + i) for i in range(40)]
    records.append(Record(purchase("C-b", "S0"), 0, 41))
    return records


def run(proc: BatchProcessor, limits: RecordLimits, records: list[Record]) -> tuple[BatchOutput, BatchTally]:
    proc.store.begin()
    out, tally = process_within_limits(proc, limits, records, [], NOW, BatchTally())  # type: ignore[arg-type]
    proc.store.commit()
    return out, tally


def changelog_limit(proc: BatchProcessor, records: list[Record]) -> int:
    """A changelog limit the big account's record exceeds and the small ones' fit."""
    proc.store.begin()
    out = proc.process(records, [], NOW, BatchTally())  # type: ignore[arg-type]
    proc.store.rollback()
    sizes: dict[Any, int] = {}
    for _p, k, v in out.changelog:  # each account's largest record
        account = out.account_of_key(k)
        sizes[account] = max(sizes.get(account, 0), record_size(k, v))
    small = max(size for account, size in sizes.items() if account != BIG)
    assert sizes[BIG] > small + 100
    return small + 50


def test_an_account_whose_changelog_record_is_too_large_is_dead_lettered_and_the_others_go_on() -> None:
    """An account whose changelog record is too large has its events dead-lettered as RECORD_REFUSED; others go on."""
    proc = processor()
    records = batch()
    limit = changelog_limit(proc, records)
    out, tally = run(proc, RecordLimits(TOPICS, {"changelog": limit}, 1 << 20), records)

    assert {out.account_of_key(k) for _p, k, _v in out.changelog} == {("P1", "C-a"), ("P1", "C-b")}
    assert {m["account"] for m in out.decisions} == {("P1", "C-a"), ("P1", "C-b")}
    assert len(out.dead_letters) == 40, "every event of the refused account in the batch, none of the others"
    for (key, value, headers), record in zip(out.dead_letters, records[1:41], strict=True):
        h = dict(headers)
        assert (key, value) == (record.key(), record.value()), "the original key and value"
        assert h["trace"] == b"t-1", "the record's own headers"
        assert h["error.reason"] == b"RECORD_REFUSED"
        assert h["source.offset"] == str(record.off).encode()
        message = h["error.message"]
        assert isinstance(message, bytes) and b"changelog" in message and str(limit).encode() in message
    assert BIG not in proc.store.classifier, "its state changes of the batch are not kept"
    assert ("P1", "C-b") in proc.store.classifier
    assert tally.records_refused == {"changelog": 1}
    assert tally.dead_letters == {"RECORD_REFUSED": 40}
    assert tally.outcomes["applied"] == 2
    assert set(out.refused) == {BIG} and out.refused[BIG][1] == 40
    assert "RECORD_REFUSED" in REASON_CODES and RecordRefused.reason == "RECORD_REFUSED"

    proc.forget_refused()
    later, _ = run(proc, RecordLimits(TOPICS, {"changelog": limit}, 1 << 20), [Record(purchase(BIG[1], "S00"), 0, 42)])
    assert later.dead_letters == [] and BIG in proc.store.classifier, "a later event of the account is tried again"


def test_an_account_refused_with_state_from_earlier_batches_keeps_that_state() -> None:
    """The account's earlier state stays as it was; only this batch's changes are undone."""
    proc = processor()
    records = batch()
    run(proc, RecordLimits(TOPICS, {}, 1 << 20), records[:20])  # the big account's first 19 subscriptions fit
    before = proc.store.classifier.get(BIG)
    assert before is not None and len(before.subscriptions) == 19
    limit = changelog_limit(proc, records[20:])
    out, _tally = run(proc, RecordLimits(TOPICS, {"changelog": limit}, 1 << 20), records[20:])
    after = proc.store.classifier.get(BIG)
    assert after is not None and len(after.subscriptions) == 19
    assert len(out.dead_letters) == 21 and not any(m["account"] == BIG for m in out.statuses)


def test_a_refusal_reported_by_the_brokers_names_its_account() -> None:
    """A delivery report carries topic, key and value: a decision is found by its value, a status or a
    changelog record (a part of an account: key, 0x1f, suffix) by its key."""
    proc = processor()
    proc.store.begin()
    out = proc.process(batch()[:2], [], NOW, BatchTally())  # type: ignore[arg-type]
    err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    decision = out.decisions[-1]
    _p, key, value = out.changelog[0]
    found = refused_accounts(
        out,
        TOPICS,
        [
            (err, "decisions", decision["key"], decision["value"]),
            (err, "changelog", key + b"\x1fsub:S00", value),
            (err, "changelog", b"__partner-dlq__:1", b"7"),
        ],
    )
    assert [(r.account, r.topic, r.why) for r in found] == [
        (decision["account"], "decisions", "MSG_SIZE_TOO_LARGE"),
        (out.account_of_key(key), "changelog", "MSG_SIZE_TOO_LARGE"),
    ]


def test_a_decision_larger_than_its_topic_takes_is_found_before_it_is_produced() -> None:
    """A decision larger than its topic's limit is found, with its account and topic, before it is produced."""
    proc = processor()
    records = batch()[:2]
    proc.store.begin()
    out = proc.process(records, [], NOW, BatchTally())  # type: ignore[arg-type]
    proc.store.rollback()
    sizes = sorted(record_size(m["key"], m["value"]) for m in out.decisions)
    found = RecordLimits(TOPICS, {"decisions": sizes[0] - 1}, 1 << 20).oversize(out)
    assert {r.account for r in found} == {("P1", "C-a"), BIG}
    assert all(r.topic == "decisions" and r.limit == sizes[0] - 1 for r in found)


class RefusingProducer:
    """Takes every record; its flush reports the status records as refused (too large)."""

    def __init__(self, refused: list[Any]) -> None:
        self.refused = refused
        self.flushes = 0

    def produce_batch(self, topic: str, batch: list[dict[str, Any]], partition: int | None = None) -> int:
        if topic == "statuses":
            for m in batch:
                self.refused.append((KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), topic, m["key"], m["value"]))
        return len(batch)

    def produce(self, *args: Any, **kwargs: Any) -> None:
        """Dead letters: taken."""

    def flush(self, timeout: float) -> int:
        self.flushes += 1
        return 0


def test_at_least_once_stops_a_refused_batch_before_its_changelog_and_offsets() -> None:
    """At least once: a refusal reported by the delivery reports raises `RecordsRefused` before the changelog
    is produced and before any offset is committed (the service then repeats the batch without the account)."""
    refused: list[Any] = []
    producer = RefusingProducer(refused)

    class Consumer:
        def commit(self, **kwargs: Any) -> None:
            raise AssertionError("no offsets for a refused batch")

    settings = Settings(processing_guarantee="at_least_once", decision_topic="decisions", status_topic="statuses")
    strategy = AtLeastOnce(producer, Consumer(), settings, _no_guard, lambda _err: None, [], refused)
    out = BatchOutput(
        statuses=[{"key": b"P1:C1", "value": b"v", "account": ("P1", "C1")}], changelog=[(0, b"P1:C1", b"state")]
    )
    out.account_keys[b"P1:C1"] = ("P1", "C1")
    with pytest.raises(RecordsRefused):
        strategy.finish(out, BatchTally(), {0: 5})
    assert producer.flushes == 1, "the changelog was not produced"
    [r] = refused_accounts(out, OutputTopics("decisions", "statuses", "changelog"), refused)
    assert r == RefusedRecord(("P1", "C1"), "statuses", record_size(b"P1:C1", b"v"), 0, "MSG_SIZE_TOO_LARGE")

"""Which output records the brokers would refuse, and whose they are.

A record larger than its topic's `max.message.bytes` (or than the producer's `message.max.bytes`) is
refused every time it is produced: retried as it is, the batch that holds it never commits and the
partition stops. So the service finds such records before it produces them (`RecordLimits.oversize`), and
maps a refusal the brokers report later, in a delivery report, back to the account it belongs to
(`refused_accounts`); the batch is then run again without that account's events (`consumers.batch`).

The size of a record is counted as its key, value and headers plus `RECORD_OVERHEAD` for the framing of
the record and its batch, uncompressed: a record within its limit by this count is within it on the wire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

from config.logs import get_logger
from consumers.batch import BatchOutput, BatchProcessor, RefusedRecord
from consumers.messages import Headers
from consumers.metrics import BatchTally
from multichannel.model import AccountKey

log = get_logger("multichannel.service")

RECORD_OVERHEAD: Final = 512
"""Bytes reserved for a record's framing and its batch header besides key, value and headers, rounded up
(a one-record batch takes 61 bytes of header and at most about 30 of record framing)."""

Delivery = tuple[KafkaError, str, bytes | None, bytes | None]
"""A refused delivery: (error, topic, key, value)."""


def record_size(key: bytes | None, value: bytes | None, headers: Headers | None = None) -> int:
    size = len(key or b"") + len(value or b"") + RECORD_OVERHEAD
    for name, v in headers or ():
        size += len(name.encode()) + 16 + (len(v.encode() if isinstance(v, str) else v) if v is not None else 0)
    return size


@dataclass(frozen=True)
class OutputTopics:
    decisions: str
    statuses: str
    changelog: str


class RecordLimits:
    """The largest record each output topic takes."""

    def __init__(self, topics: OutputTopics, limits: Mapping[str, int], default: int) -> None:
        self.topics = topics
        self.limits = dict(limits)
        self.default = default

    def limit(self, topic: str) -> int:
        return self.limits.get(topic, self.default)

    def smallest(self) -> int:
        """The smallest limit of the output topics: the largest record batch every one of them takes."""
        return min(self.limits.values(), default=self.default)

    @classmethod
    def from_cluster(
        cls, client_conf: dict[str, Any], topics: OutputTopics, producer_max: int, configured: int = 0
    ) -> RecordLimits:
        """Each topic's `max.message.bytes` (read once, at start), capped by the producer's `message.max.bytes`;
        `configured` (when not 0) stands in for the topics' values. A topic whose limit cannot be read gets
        the producer's."""
        names = [topics.decisions, topics.statuses, topics.changelog]
        if configured:
            return cls(topics, {t: min(configured, producer_max) for t in names}, producer_max)
        limits: dict[str, int] = {}
        admin = AdminClient(client_conf)
        try:
            found = admin.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in names], request_timeout=10)
            for resource, future in found.items():
                entries = future.result(timeout=15)
                limits[resource.name] = min(int(entries["max.message.bytes"].value), producer_max)
        except (KafkaException, KeyError, ValueError, TimeoutError) as exc:
            log.warning("record_limits_unknown", topics=names, error=str(exc), using=producer_max)
        return cls(topics, limits, producer_max)

    def oversize(self, out: BatchOutput) -> list[RefusedRecord]:
        """The records of `out` larger than their topic takes, as the accounts they belong to (records that
        belong to no account, such as checkpoints, are not checked: they are small)."""
        t = self.topics
        found: list[RefusedRecord] = []
        for topic, batch in ((t.decisions, out.decisions), (t.statuses, out.statuses)):
            limit = self.limit(topic)
            for m in batch:
                size = record_size(m["key"], m["value"])
                if size > limit:
                    found.append(RefusedRecord(m["account"], topic, size, limit, "too large"))
        limit = self.limit(t.changelog)
        for _p, key, value in out.changelog:
            size = record_size(key, value)
            if size > limit:
                account = out.account_of_key(key)
                if account is not None:
                    found.append(RefusedRecord(account, t.changelog, size, limit, "too large"))
        return found


def refused_accounts(out: BatchOutput, topics: OutputTopics, deliveries: Iterable[Delivery]) -> list[RefusedRecord]:
    """The accounts whose records the brokers refused, from the refused deliveries of `out`'s transaction
    (a decision is found by its value: its key is the customer only)."""
    by_value: dict[bytes, AccountKey] | None = None
    found: list[RefusedRecord] = []
    for err, topic, key, value in deliveries:
        account: AccountKey | None = None
        if topic == topics.decisions:
            if by_value is None:
                by_value = {m["value"]: m["account"] for m in out.decisions}
            account = by_value.get(value or b"")
        elif topic in (topics.statuses, topics.changelog) and key is not None:
            account = out.account_of_key(key)
        if account is None:
            log.error("refused_record_unknown", topic=topic, size=record_size(key, value), error=str(err))
            continue
        found.append(RefusedRecord(account, topic, record_size(key, value), 0, err.name() or str(err.code())))
    return found


def refuse(processor: BatchProcessor, found: Iterable[RefusedRecord]) -> bool:
    """Add the accounts of `found` to the processor's refused ones (the first refusal of each is kept);
    True when one of them was not refused yet."""
    refused, added = processor.refused, False
    for r in found:
        if r.account not in refused:
            refused[r.account] = r
            added = True
    return added


def process_within_limits(
    processor: BatchProcessor,
    limits: RecordLimits,
    records: Sequence[Message],
    partner_records: Sequence[Message],
    now: datetime,
    tally: BatchTally,
) -> tuple[BatchOutput, BatchTally]:
    """Process the batch (in an open store batch); while it holds a record larger than its topic takes, undo
    it and process it again without that record's account (nothing is produced yet, so there is no
    transaction to abort). Each round refuses at least one more account, so this ends."""
    store = processor.store
    while True:
        out = processor.process(records, partner_records, now, tally)
        if not refuse(processor, limits.oversize(out)):
            return out, tally
        store.rollback()
        store.begin()
        tally = BatchTally(input_records=len(records))

"""Restore of per-partition account state from the compacted changelog topic.

The changelog is co-partitioned with the subscription topic: partition p holds the states of
the accounts whose events arrive on input partition p. Restore reads raw records and keeps the
latest value per key (compaction may not have run yet); the service holds each surviving value
as bytes and decodes an account only on its first use (`consumers.state_format`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from config.errors import is_refusal
from consumers.messages import partition_of
from consumers.state_format import StateFormatError

PARTNER_CHECKPOINT_PREFIX = b"__partner-checkpoint__:"
"""How far a partner partition's bad records were dead-lettered."""
TABLE_CHECKPOINT_PREFIX = b"__partner-table__:"
"""How far a partner partition's records are reflected in the service's partner table topic."""


@dataclass
class RestoredPartition:
    """Latest raw values of one changelog partition."""

    partition: int
    values: dict[bytes, bytes]
    records_read: int
    seconds: float


def read_changelog(
    client_conf: dict[str, Any],
    topic: str,
    partitions: Iterable[int],
    group_id: str,
    *,
    timeout_s: float = 120.0,
    batch: int = 50_000,
) -> list[RestoredPartition]:
    """Read `partitions` of the changelog to their end (read_committed) and return the latest values."""
    parts = sorted(set(partitions))
    if not parts:
        return []
    consumer = Consumer(
        {
            **client_conf,
            "group.id": group_id,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }
    )
    started = time.monotonic()
    try:
        # Done means the position reached the high watermark seen at the start. An EOF can come
        # earlier, at the last stable offset, while the previous owner's final commit markers are
        # still being written: stopping there would lose that transaction's states.
        ends: dict[int, int] = {}
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        pending = set(ends)
        values: dict[int, dict[bytes, bytes]] = {p: {} for p in parts}
        counts = dict.fromkeys(parts, 0)
        if pending:
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"changelog {topic} partitions {sorted(pending)} not restored in {timeout_s:.0f} s")
            # what the client has fetched, at once; when it has nothing, wait briefly for the next fetch
            # (a consume with a timeout would hold every call until `batch` records or the timeout)
            msgs = consumer.consume(num_messages=batch, timeout=0)
            if not msgs:
                first = consumer.poll(0.05)
                msgs = [] if first is None else [first]
            for m in msgs:  # the restore's hot loop: one pass, no call that is not needed
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF and (m.offset() or 0) >= ends[partition_of(m)]:
                        pending.discard(partition_of(m))
                    elif err.fatal() or is_refusal(err):
                        raise KafkaException(err)
                    continue
                p = partition_of(m)
                counts[p] += 1
                key = m.key()
                if key is not None:
                    value = m.value()
                    if value is not None:
                        values[p][key] = value
                    else:
                        values[p].pop(key, None)
            if pending:
                for tp in consumer.position([TopicPartition(topic, p) for p in sorted(pending)]):
                    if tp.offset >= ends[tp.partition]:
                        pending.discard(tp.partition)
        elapsed = time.monotonic() - started
        return [RestoredPartition(p, values[p], counts[p], elapsed) for p in parts]
    finally:
        consumer.close()


def account_key_bytes(partner_id: str, customer_id: str) -> bytes:
    """The changelog (and customer-status) key of an account: `partner_id:customer_id`."""
    return f"{partner_id}:{customer_id}".encode()


def partner_checkpoint_key(partner_partition: int) -> bytes:
    """Key of the record that remembers how far partner records were dead-lettered."""
    return PARTNER_CHECKPOINT_PREFIX + str(partner_partition).encode()


def table_checkpoint_key(partner_partition: int) -> bytes:
    """Key of the record that remembers how far partner records are in the partner table topic."""
    return TABLE_CHECKPOINT_PREFIX + str(partner_partition).encode()


@dataclass
class SortedValues:
    """A restored partition's latest values by what they are (`split_restored`)."""

    whole: list[bytes] = field(default_factory=list)
    """Accounts held whole in one value: formats 0x01 and 0x02, written by earlier releases."""
    avro: list[bytes] = field(default_factory=list)
    """Accounts in the first release's Avro form (first byte 0, decoded through the registry)."""
    accounts: dict[bytes, bytes] = field(default_factory=dict)
    """Account key -> the account's own record (format 0x03)."""
    entities: dict[bytes, list[bytes]] = field(default_factory=dict)
    """Account key -> the values of its subscriptions and dedup pages (format 0x03)."""
    checkpoints: dict[int, int] = field(default_factory=dict)
    """Partner partition -> how far its bad records were dead-lettered."""
    table: dict[int, int] = field(default_factory=dict)
    """Partner partition -> how far its records are in the partner table topic."""


def split_restored(restored: RestoredPartition) -> SortedValues:
    """A partition's latest values sorted out by their key and first byte: one pass, and no value decoded."""
    out = SortedValues()
    whole, avro, accounts, entities = out.whole, out.avro, out.accounts, out.entities
    whole_keys: list[bytes] = []
    for key, value in restored.values.items():
        cut = key.find(b"\x1f")
        if cut >= 0:  # an entity of an account: `account key` \x1f kind id
            head = key[:cut]
            parts = entities.get(head)
            if parts is None:
                entities[head] = [value]
            else:
                parts.append(value)
        elif value[:1] == b"\x03":
            accounts[key] = value
        elif key.startswith(PARTNER_CHECKPOINT_PREFIX):
            out.checkpoints[int(key[len(PARTNER_CHECKPOINT_PREFIX) :])] = int(value)
        elif key.startswith(TABLE_CHECKPOINT_PREFIX):
            out.table[int(key[len(TABLE_CHECKPOINT_PREFIX) :])] = int(value)
        elif value[:1] == b"\x00":
            avro.append(value)
        else:
            whole.append(value)
            whole_keys.append(key)
    for key in whole_keys:
        if key in entities:
            raise MixedReleases(
                f"changelog partition {restored.partition}: account {key.decode(errors='replace')} was written in "
                "an earlier release's format after this release's: an instance of the earlier release runs in "
                "this group; stop it (a rolling upgrade is not supported: stop every instance, then start the new "
                "release)"
            )
    return out


class MixedReleases(StateFormatError):
    """An instance of an earlier release wrote the changelog after this release did."""

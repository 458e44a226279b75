"""The partner table's source: every instance reads the whole compacted partner topic.

Like a global table, it is not part of the consumer group: all partitions are assigned from
the beginning on start, read to the end before subscription events are processed, and then
polled without blocking each turn of the main loop. Its positions live only in memory.

The partner topic is the billing systems' topic, and its compaction keeps each partner's last
*arrival*, which need not be its latest event: a late, older event can be what survives. So a
restart does not rebuild the table from that topic alone. The service keeps its own compacted
table (`read_partner_table`), in which each partner's value is the entry that wins by
(occurred_at, event_id), with its dedup window; a start reads it first and then merges the
partner topic over it, so the table is the same whatever either compaction kept.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from config.errors import is_refusal
from consumers.changelog import read_changelog
from consumers.messages import offset_of, partition_of
from consumers.state_format import decode_partner_entry
from multichannel.partners import PartnerEntry


class PartnerFeed:
    """Reads partner-change records; `mark`/`rewind` undo an aborted batch's reads."""

    def __init__(self, client_conf: dict[str, Any], topic: str, group_id: str) -> None:
        conf = {
            **client_conf,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
        self._topic = topic
        self._consumer = Consumer(conf)
        self._next: dict[int, int] = {}
        self._mark: dict[int, int] = {}
        self._eof: set[int] = set()

    def start(self, timeout_s: float = 30.0) -> list[int]:
        """Assign every partition of the topic from the beginning; returns the partition ids."""
        md = self._consumer.list_topics(self._topic, timeout=timeout_s)
        topic_md = md.topics.get(self._topic)
        if topic_md is not None and is_refusal(topic_md.error):
            raise KafkaException(topic_md.error)
        if topic_md is None or topic_md.error is not None or not topic_md.partitions:
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, f"partner topic {self._topic} missing"))
        partitions = sorted(topic_md.partitions)
        self._consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in partitions])
        self._next = dict.fromkeys(partitions, 0)
        self._mark = dict(self._next)
        return partitions

    def catch_up(self, timeout_s: float = 120.0, batch: int = 10_000) -> list[Message]:
        """Read until every partition reached the end it had when this call started."""
        ends: dict[int, int] = {}
        for p in self._next:
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(self._topic, p), timeout=10)
            ends[p] = high
        out: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while any(self._next[p] < ends[p] and p not in self._eof for p in ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"partner topic {self._topic} not caught up in {timeout_s:.0f} s")
            # what the client has fetched, at once; when it has nothing, wait briefly for the next fetch (a
            # consume with a timeout would hold every call until `batch` records or the timeout: on a small
            # topic, every start would wait that timeout out)
            got = self.poll(batch)
            out.extend(got if got else self.poll(1, timeout_s=0.05))
        return out

    def poll(self, max_records: int, timeout_s: float = 0.0) -> list[Message]:
        """Whatever partner records have arrived (at most `max_records`), without blocking by default."""
        msgs = self._consumer.consume(num_messages=max_records, timeout=timeout_s)
        good: list[Message] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    p = partition_of(m)
                    self._eof.add(p)
                    self._next[p] = max(self._next[p], offset_of(m))
                    continue
                if err.fatal() or is_refusal(err):
                    raise KafkaException(err)
                continue
            p = partition_of(m)
            self._eof.discard(p)
            self._next[p] = offset_of(m) + 1
            good.append(m)
        return good

    def mark(self) -> None:
        """Remember the positions at the start of a batch."""
        self._mark = dict(self._next)

    def rewind(self) -> None:
        """Go back to the positions of the last mark (the batch was aborted)."""
        for p, offset in self._mark.items():
            if self._next.get(p) != offset:
                self._consumer.seek(TopicPartition(self._topic, p, offset))
        self._next = dict(self._mark)
        self._eof.clear()

    def close(self) -> None:
        self._consumer.close()


def read_partner_table(
    client_conf: dict[str, Any], topic: str, group_id: str, *, timeout_s: float = 120.0
) -> list[tuple[str, PartnerEntry]]:
    """The service's own partner table (`Settings.partner_table_topic`), read whole (read_committed): the
    entries its owners wrote, the latest value of each partner."""
    probe = Consumer({**client_conf, "group.id": group_id, "enable.auto.commit": False})
    try:
        topic_md = probe.list_topics(topic, timeout=30).topics.get(topic)
    finally:
        probe.close()
    if topic_md is not None and is_refusal(topic_md.error):
        raise KafkaException(topic_md.error)
    if topic_md is None or topic_md.error is not None or not topic_md.partitions:
        raise KafkaException(
            KafkaError(
                KafkaError.UNKNOWN_TOPIC_OR_PART,
                f"partner table topic {topic} missing: `multichannel topics create` creates it",
                fatal=True,
            )
        )
    restored = read_changelog(client_conf, topic, sorted(topic_md.partitions), group_id, timeout_s=timeout_s)
    return [decode_partner_entry(value) for part in restored for value in part.values.values()]

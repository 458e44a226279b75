"""The partner table's source: every instance reads the whole compacted partner topic.

Like a global table, it is not part of the consumer group: all partitions are assigned from
the beginning on start, read to the end before subscription events are processed, and then
polled without blocking each turn of the main loop. Its positions live only in memory; a
restart rebuilds the table from the compacted topic.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from config.errors import is_refusal
from consumers.messages import offset_of, partition_of


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

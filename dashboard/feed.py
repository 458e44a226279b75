"""The Kafka side of the dashboard: reads the decision, customer-status and dead-letter topics into the
view, from the beginning, `read_committed`, and follows them live.

No consumer group offsets: every partition is assigned at offset 0 and the view is rebuilt on each
start (the status topic is compacted, so its size follows the accounts; the decision topic carries
the history the customer page shows). The view has caught up once every partition has reported its
end (`enable.partition.eof`, which a read_committed consumer reports at the last stable offset);
until then `behind` is what is left up to the end offsets taken at start.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from dashboard.config import Settings, get_logger, registry_client
from dashboard.decode import OutputDecoder
from dashboard.view import View
from schemas import CUSTOMER_STATUS, SUBSCRIPTION_DECISION
from schemas.wire import RegistryUnavailableError

log = get_logger("multichannel.dashboard.feed")

_BATCH: Final = 1000
_POLL_S: Final = 0.05


@dataclass
class Progress:
    """How far the feed is: partitions still catching up and what is left of them."""

    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    at_end: set[tuple[str, int]] = field(default_factory=set)
    started: bool = False

    @property
    def caught_up(self) -> bool:
        return self.started and len(self.at_end) == len(self.ends)

    @property
    def behind(self) -> int:
        """Records (and transaction markers) left up to the end offsets taken at start."""
        return sum(max(0, end - self.positions.get(tp, 0)) for tp, end in self.ends.items() if tp not in self.at_end)


class Feed:
    """One consumer thread that keeps `view` up to date; `on_change` is called after each applied batch."""

    def __init__(self, settings: Settings, view: View, on_change: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.view = view
        self.on_change = on_change
        self.progress = Progress()
        self.error: str | None = None
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        client = registry_client(settings)
        self._decisions = OutputDecoder(client, SUBSCRIPTION_DECISION)
        self._statuses = OutputDecoder(client, CUSTOMER_STATUS)
        self._topics = (settings.decision_topic, settings.status_topic, settings.dead_letter_topic)

    def start(self) -> Feed:
        self._thread = threading.Thread(target=self._run, name="dashboard-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        consumer = Consumer(
            {
                **self.settings.kafka_client_config(),
                # assign() with explicit offsets: the group id is required by librdkafka but never joins or commits
                "group.id": f"multichannel-dashboard-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",  # only what the service committed
                "enable.partition.eof": True,  # tells when a partition has been read to its end
                "auto.offset.reset": "earliest",
            }
        )
        try:
            self._assign(consumer)
            while not self._stop.is_set():
                messages = consumer.consume(_BATCH, timeout=_POLL_S)
                if messages:
                    self._apply(messages)
        except Exception as exc:  # a feed that stops must say why on the page, not die silently
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("dashboard_feed_failed")
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer) -> None:
        partitions: list[TopicPartition] = []
        while not self._stop.is_set():
            metadata = consumer.list_topics(timeout=10)
            missing = [t for t in self._topics if t not in metadata.topics or metadata.topics[t].error is not None]
            if not missing:
                break
            self.error = f"waiting for topics {', '.join(missing)}"
            self._stop.wait(1.0)
        else:
            return
        self.error = None
        for topic in self._topics:
            for p in sorted(metadata.topics[topic].partitions):
                partitions.append(TopicPartition(topic, p, OFFSET_BEGINNING))
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                self.progress.ends[topic, p] = high
                self.progress.positions[topic, p] = low
                if high <= low:
                    self.progress.at_end.add((topic, p))
        consumer.assign(partitions)
        self.progress.started = True
        if self.progress.caught_up:
            self.caught_up.set()
        log.info("dashboard_feed_assigned", partitions=len(partitions), behind=self.progress.behind)
        self.on_change()

    def _apply(self, messages: list[Message]) -> None:
        decision_topic, status_topic, _ = self._topics
        decoded: list[tuple[Message, dict[str, Any] | None]] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self.progress.at_end.add((msg.topic() or "", msg.partition() or 0))
                else:
                    log.warning("dashboard_feed_error", error=str(err))
                continue
            topic = msg.topic()
            if topic == decision_topic:
                decoded.append((msg, self._decode(self._decisions, msg.value())))
            elif topic == status_topic:
                value = msg.value()
                decoded.append((msg, None if value is None else self._decode(self._statuses, value)))
            else:
                decoded.append((msg, None))
        view = self.view
        with view.lock:
            for msg, record in decoded:
                self._apply_one(view, msg, record)
        if self.progress.caught_up:
            self.caught_up.set()
        self.on_change()

    def _apply_one(self, view: View, msg: Message, record: dict[str, Any] | None) -> None:
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        self.progress.positions[topic, partition] = offset + 1
        try:
            if topic == self._topics[0]:
                if record is None:
                    view.count_malformed(topic)
                else:
                    view.apply_decision(offset, record)
            elif topic == self._topics[1]:
                if record is None and msg.value() is not None:
                    view.count_malformed(topic)
                else:
                    key = msg.key()
                    view.apply_status(offset, key.decode("utf-8", "replace") if key else None, record)
            else:
                view.add_dead_letter(_reason(msg))
        except (KeyError, TypeError, ValueError):
            view.count_malformed(topic)

    def _decode(self, decoder: OutputDecoder, value: bytes | None) -> dict[str, Any] | None:
        """The record, or None for one that is not; waits out a registry that does not answer."""
        while True:
            try:
                record = decoder.decode(value)
            except RegistryUnavailableError as exc:
                self.error = str(exc)
                if self._stop.wait(1.0):
                    return None
                continue
            self.error = None
            return record


def _reason(msg: Message) -> str:
    headers = msg.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:
        if name == "error.reason" and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return "UNKNOWN"

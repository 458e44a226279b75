"""`send_offsets_to_transaction` runs on a thread of its own, so that a call librdkafka never returns from (its
group coordinator lookup after a broker restart) gives the session control back as `ProducerStuck` instead
of holding the process until the watchdog ends it."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from consumers import commit
from consumers.commit import OffsetsSender, ProducerStuck
from consumers.kafka_errors import UncertainTransaction


class Producer:
    """Answers each call as told: return, raise, or block until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[TopicPartition], Any, float]] = []
        self.raise_next: Exception | None = None
        self.block = threading.Event()
        self.blocking = False

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: Any, timeout: float) -> None:
        self.calls.append((offsets, metadata, timeout))
        if self.blocking:
            self.block.wait()
        if self.raise_next is not None:
            exc, self.raise_next = self.raise_next, None
            raise exc


OFFSETS = [TopicPartition("subs", 0, 7)]


def test_calls_reach_the_producer_in_order_and_its_errors_reach_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each call is made once with its arguments; an error the client raises is raised in the caller's thread,
    and the next call works again."""
    monkeypatch.setattr(commit, "ABANDONED_PRODUCERS", [])
    producer = Producer()
    sender = OffsetsSender(producer)
    sender.send(OFFSETS, "meta", 5.0)
    producer.raise_next = KafkaException(KafkaError(KafkaError._TIMED_OUT))
    with pytest.raises(KafkaException):
        sender.send(OFFSETS, "meta", 5.0)
    sender.send([TopicPartition("subs", 1, 9)], "meta", 5.0)
    assert [(c[0][0].partition, c[0][0].offset, c[2]) for c in producer.calls] == [
        (0, 7, 5.0),
        (0, 7, 5.0),
        (1, 9, 5.0),
    ]
    assert commit.ABANDONED_PRODUCERS == []


def test_a_call_that_does_not_return_gives_the_producer_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call still blocked its timeout plus the grace after it began raises `ProducerStuck` (a session
    restart, not a process exit), and the producer is kept among the given-up ones, never to be closed."""
    monkeypatch.setattr(commit, "ABANDONED_PRODUCERS", [])
    monkeypatch.setattr(commit, "STUCK_GRACE_S", 0.0)
    producer = Producer()
    producer.blocking = True
    sender = OffsetsSender(producer)
    try:
        with pytest.raises(ProducerStuck) as stuck:
            sender.send(OFFSETS, "meta", 0.05)
        assert isinstance(stuck.value, UncertainTransaction)
        assert [producer] == commit.ABANDONED_PRODUCERS
        assert len(producer.calls) == 1
    finally:
        producer.block.set()  # the blocked call returns, and its thread waits for a call that never comes

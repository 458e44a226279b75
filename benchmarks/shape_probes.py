"""Observers of the service for the CSP data shapes: committed offsets, ends, metrics, aborts."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from benchmarks.common import BenchError, last_error_line, scrape_metrics
from config.settings import Settings


def topic_ends(settings: Settings, topic: str, partitions: int) -> dict[int, int]:
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
                why = f": {last_error_line(stuck.log)}" if stuck is not None else ""
                raise BenchError(f"the service exited with {proc.returncode} while processing{why}")
            if now > deadline:
                behind = {p: (done.get(p), end) for p, end in ends.items() if done.get(p, 0) < end}
                raise BenchError(f"input not processed in {deadline_s:.0f} s: {behind}")
            time.sleep(poll_s)  # sampling period of the outside observer

    def close(self) -> None:
        self.watcher.close()


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
        samples = scrape_metrics(self.log).get("multichannel_transaction_aborts") or []
        return sum(v for n, _lab, v in samples if n.endswith("_total"))

    def check(self) -> None:
        if self._aborts() - self.base >= self.limit:
            raise BenchError(f"the service aborts its transactions: {_last_abort(self.log)}")


def decision_reader(settings: Settings) -> tuple[Consumer, dict[int, int]]:
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
    ends = topic_ends(settings, settings.decision_topic, settings.output_partitions)
    reader.assign([TopicPartition(settings.decision_topic, p, o) for p, o in ends.items()])
    return reader, ends

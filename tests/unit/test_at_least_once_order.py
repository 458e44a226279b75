"""At-least-once: a batch's changelog is written only once its outputs are delivered, and the offsets only once
both are. The fault suite's at-least-once run lost decisions when a crash fell between a delivered changelog
and undelivered decisions: the repeated batch found its events already applied and took them for duplicates."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from config.settings import Settings
from consumers.batch import BatchOutput
from consumers.commit import AtLeastOnce
from consumers.metrics import BatchTally


class RecordingClients:
    """The producer and consumer calls of one batch, in order (a fake: no broker)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def produce_batch(self, topic: str, batch: list[dict[str, Any]], partition: int | None = None) -> int:
        self.calls.append(f"produce {topic}")
        return len(batch)

    def produce(self, topic: str, **_record: Any) -> None:
        self.calls.append(f"produce {topic}")

    def flush(self, _timeout: float) -> int:
        self.calls.append("flush")
        return 0

    def commit(self, **_offsets: Any) -> None:
        self.calls.append("commit offsets")


def _no_guard(_what: str, _timeout_s: float) -> AbstractContextManager[None]:
    return nullcontext()


def test_changelog_follows_delivered_outputs_and_offsets_follow_both() -> None:
    """Decisions, statuses and dead letters, flush; changelog, flush; then the offsets."""
    settings = Settings(processing_guarantee="at_least_once")
    clients = RecordingClients()
    strategy = AtLeastOnce(clients, clients, settings, _no_guard, lambda _err: None, [])
    out = BatchOutput()
    out.decisions.append({"key": b"C1", "value": b"decision"})
    out.statuses.append({"key": b"P:C1", "value": b"status"})
    out.dead_letters.append((b"C2", b"bad", []))
    out.changelog.append((0, b"P:C1", b"state"))
    strategy.finish(out, BatchTally(), {0: 7})
    assert clients.calls == [
        f"produce {settings.decision_topic}",
        f"produce {settings.status_topic}",
        f"produce {settings.dead_letter_topic}",
        "flush",
        f"produce {settings.changelog_topic}",
        "flush",
        "commit offsets",
    ]

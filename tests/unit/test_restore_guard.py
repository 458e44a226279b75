"""A restore's work after the changelog is read (holding every restored account: tens of seconds for a million),
and a revocation's (dropping them: seconds), run under watchdog guards of their own, not under the deadline of
the `consume` or `consumer close` call whose rebalance callback they run in; otherwise an instance that holds a
million accounts is ended by its watchdog at every start, and at a SIGTERM after its last commit."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import TopicPartition

import consumers.service
from config.settings import Settings
from consumers.changelog import RestoredPartition
from consumers.metrics import HealthState, ServiceMetrics
from consumers.service import RESTORE_TIMEOUT_S, _Session

CLOCK = datetime(2026, 12, 2, tzinfo=UTC)


class Guards:
    """The watchdog's guards as a stack of names: what a deadline would be charged to at each moment."""

    def __init__(self) -> None:
        self.stack: list[tuple[str, float]] = []

    @contextmanager
    def guard(self, what: str, timeout_s: float) -> Iterator[None]:
        self.stack.append((what, timeout_s))
        try:
            yield
        finally:
            self.stack.pop()


class Store:
    """Holds restored partitions, noting the innermost guard while it does."""

    def __init__(self, guards: Guards) -> None:
        self.guards = guards
        self.owned: set[int] = set()
        self.seen: list[tuple[str, float]] = []

    def assign(self, restored: Iterable[RestoredPartition], now: datetime) -> tuple[int, int]:
        self.seen.append(self.guards.stack[-1])
        parts = list(restored)
        self.owned |= {p.partition for p in parts}
        return sum(p.records_read for p in parts), 0

    def revoke(self, partitions: Iterable[int]) -> set[int]:
        self.seen.append(self.guards.stack[-1])
        gone = set(partitions) & self.owned
        self.owned -= gone
        return gone

    def __len__(self) -> int:
        return 0


def test_holding_and_dropping_accounts_have_guards_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside `consume`'s guard, the assignment callback holds the restored accounts under a deadline of its own
    (RESTORE_TIMEOUT_S), and inside `consumer close`'s, the revocation callback drops them under another."""
    guards = Guards()
    store = Store(guards)
    s = _Session.__new__(_Session)
    s.svc = SimpleNamespace(clock=lambda: CLOCK, health=HealthState(), _stop=threading.Event(), _client_conf={})  # type: ignore[assignment]
    s.s, s.metrics, s.guard = Settings(), ServiceMetrics(), guards.guard
    s.store = store  # type: ignore[assignment]
    s.consumer = SimpleNamespace(committed=lambda tps, timeout: tps)  # type: ignore[assignment]

    def read_changelog(conf: Any, topic: str, partitions: list[int], group: str, **_kw: Any) -> list[RestoredPartition]:
        return [RestoredPartition(p, {}, 10, 0.0) for p in partitions]

    monkeypatch.setattr(consumers.service, "read_changelog", read_changelog)
    with guards.guard("consume", 0.1):
        s._on_assign(None, [TopicPartition("subs", 0), TopicPartition("subs", 1)])  # type: ignore[arg-type]
    assert store.seen == [("restored accounts held", RESTORE_TIMEOUT_S)]
    assert store.owned == {0, 1}
    with guards.guard("consumer close", 8.0):
        s._on_revoke(None, [TopicPartition("subs", 0), TopicPartition("subs", 1)])  # type: ignore[arg-type]
    assert store.seen[1:] == [("revoked accounts dropped", RESTORE_TIMEOUT_S)]
    assert store.owned == set()

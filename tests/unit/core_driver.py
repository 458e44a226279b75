"""The core under the contract's event-time clock, for tests that read as the rule book.

Events (contract field names, as dicts) go through `multichannel.parse.parse_event` into a
`multichannel.engine.Classifier`, with the clock semantics the rule book and `multichannel classify`
share: the clock is the largest `occurred_at` of the events so far, due timers fire before each event
that moves it, and `advance` moves it on (the end of the input, or a timer a doc example names). No
JSON lines and no Kafka: the rule tests exercise the rules, not a transport.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from multichannel.engine import Classifier
from multichannel.parse import parse_event, parse_timestamp
from multichannel.records import CustomerStatusRecord, OutputRecord, SubscriptionDecision
from multichannel.rulebooks import SEED, RuleBook


def instant(value: str | datetime) -> datetime:
    """A timestamp as the contract writes it, or a `YYYY-MM-DD` date read as 00:00 UTC."""
    if isinstance(value, datetime):
        return value
    return parse_timestamp(value + "T00:00:00Z" if len(value) == 10 else value)


class CoreDriver:
    """One classifier fed one event at a time; `duplicates` counts the events the engine ignored."""

    def __init__(self, classifier: Classifier | None = None) -> None:
        self.engine = Classifier(transactional=False) if classifier is None else classifier
        self.clock: datetime | None = None
        self.duplicates = 0

    def advance(self, to: str | datetime) -> list[OutputRecord]:
        """Move the clock to `to` (never backwards) and return what the timers due by then emit."""
        at = instant(to)
        if self.clock is not None and at <= self.clock:
            return []
        self.clock = at
        return self.engine.fire_due(at)

    def apply(self, event: Mapping[str, Any]) -> list[OutputRecord]:
        """Parse and apply one event: the records of the timers its time made due, then its own."""
        parsed = parse_event(event)
        fired = self.advance(parsed.occurred_at)
        assert self.clock is not None
        records = self.engine.apply(parsed, self.clock)
        if records is None:
            self.duplicates += 1
            return fired
        return fired + records


def classify(
    events: Iterable[Mapping[str, Any]], as_of: str | datetime | None = None, rulebook: RuleBook = SEED
) -> list[OutputRecord]:
    """Every record the events give under `rulebook`, in order, with the clock moved to `as_of` at the end."""
    driver = CoreDriver(Classifier(transactional=False, rulebook=rulebook))
    records = [record for event in events for record in driver.apply(event)]
    if as_of is not None:
        records.extend(driver.advance(as_of))
    return records


def decisions(records: Iterable[OutputRecord]) -> list[SubscriptionDecision]:
    return [r for r in records if isinstance(r, SubscriptionDecision)]


def statuses(records: Iterable[OutputRecord]) -> list[CustomerStatusRecord]:
    return [r for r in records if isinstance(r, CustomerStatusRecord)]


def final(records: list[OutputRecord], sid: str = "S1", cid: str = "C1") -> SubscriptionDecision:
    """The last decision of subscription `sid` of customer `cid`: its current one."""
    mine = [d for d in decisions(records) if d.subscription_id == sid and d.customer_id == cid]
    assert mine, f"no decision for {sid}"
    return mine[-1]


def final_status(records: list[OutputRecord], cid: str = "C1") -> CustomerStatusRecord:
    """The last status record of customer `cid`."""
    mine = [s for s in statuses(records) if s.customer_id == cid]
    assert mine, f"no status for {cid}"
    return mine[-1]


def day(value: str | None) -> date | None:
    """A `blocked_until` as the rule book writes it (`YYYY-MM-DD` or null)."""
    return None if value is None else date.fromisoformat(value)

"""The `current` rule book's two new timers in the exactly-once service: a cancellation window's end and a
GDAP expiry each fire once, at their deadline, across SIGKILLs and restores, and no decided_at goes back.

The service runs with its clock moved (`tests.integration.clocked_service`) so that a window's midnight
falls seconds after a restart; the clock moves at wall speed and only forward, as a deployment's does."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from config.settings import Settings
from multichannel.engine import Classifier
from multichannel.parse import parse_event, parse_timestamp
from multichannel.records import SubscriptionDecision
from multichannel.rulebooks import CURRENT
from tests.integration.clocked_service import OFFSET_VARIABLE
from tests.integration.pipeline import (
    COMPARED_DECISION_FIELDS,
    ServiceProcess,
    publish,
    read_outputs,
    wait_until_processed,
)

SettingsFactory = Callable[..., Settings]

WINDOW_CLOSES = datetime(2026, 7, 1, tzinfo=UTC)
"""00:00 UTC of the day after the windows' last day: the first timer."""
EXPIRES_AT = "2026-07-01T00:00:06Z"
"""The grants' GDAP end: the second timer, 6 s after the first."""
CUSTOMERS = 6


def _events() -> list[dict[str, Any]]:
    """A reseller's accounts, each with an NCE license whose cancellation window closes at WINDOW_CLOSES and a
    legacy one, a relationship and a delegated-admin grant that expires at EXPIRES_AT."""
    at = "2026-06-01T00:00:00Z"
    items: list[dict[str, Any]] = [
        {"event_type": "partner_program_changed", "event_id": "pd", "occurred_at": at, "partner_id": "PD",
         "program": "csp_indirect_provider"},
        {"event_type": "partner_program_changed", "event_id": "pr", "occurred_at": at, "partner_id": "PR",
         "program": "csp_indirect_reseller", "indirect_provider_ids": ["PD"]},
    ]  # fmt: skip
    for c in range(CUSTOMERS):
        account = {"occurred_at": at, "partner_id": "PR", "customer_id": f"C{c}"}
        license_ = {
            "event_type": "subscription_purchased",
            "offer_id": "M365-E3",
            "billing_model": "license",
            "channel": "microsoft_direct",
            "quantity": 10,
            "term_start": "2026-06-23",
            "term_end": "2027-06-23",
        }
        items += [
            {**account, **license_, "event_id": f"buy-nce-{c}", "subscription_id": "S-nce", "commerce": "nce",
             "cancellation_allowed_until": "2026-06-30"},
            {**account, **license_, "event_id": f"buy-legacy-{c}", "subscription_id": "S-legacy"},
            {**account, "event_type": "relationship_accepted", "event_id": f"rel-{c}"},
            {**account, "event_type": "delegated_admin_granted", "event_id": f"gdap-{c}", "expires_at": EXPIRES_AT},
        ]  # fmt: skip
    return items


def _expected(items: list[dict[str, Any]]) -> list[SubscriptionDecision]:
    """The core's records under `current` for the events applied before either deadline, then both timers."""
    engine = Classifier(transactional=False, rulebook=CURRENT)
    clock = WINDOW_CLOSES - timedelta(seconds=20)
    records = [r for item in items for r in engine.apply(parse_event(item), clock) or ()]
    records += engine.fire_due(parse_timestamp(EXPIRES_AT))
    return [r for r in records if isinstance(r, SubscriptionDecision)]


def _wait_for(settings: Settings, service: ServiceProcess, done: Callable[[list[dict[str, Any]]], bool]) -> None:
    """Read the committed decisions until `done` holds of them (each read goes to the topics' ends)."""
    deadline = time.monotonic() + 120
    while True:
        decisions, _, _ = read_outputs(settings)
        if done(decisions):
            return
        assert service.alive(), service.log_tail()
        assert time.monotonic() < deadline, f"not seen in 120 s:\n{service.log_tail()}"


def test_window_end_and_gdap_expiry_fire_once_across_sigkill(settings_factory: SettingsFactory, tmp_path: Path) -> None:
    """Under `current`: the events apply an hour before the windows close and the instance is SIGKILLed; the next
    one sees the windows close (WAIT_FOR_TERM_END) and is SIGKILLed; the next fires the GDAP expiry
    (REQUEST_DELEGATED_ADMIN_FOR_RESELLER comes back) and is SIGKILLed in turn; a last one takes a new account.
    The committed decisions are, record for record, what the core emits uninterrupted: each timer once, stamped
    with its deadline and no cause, and no decided_at of a subscription goes back."""
    settings = settings_factory(batch_size=50, rulebook="current")
    run = 0

    def start(ahead_s: float) -> ServiceProcess:
        """A service whose clock reads WINDOW_CLOSES `ahead_s` seconds from now."""
        nonlocal run
        run += 1
        offset = (WINDOW_CLOSES - (datetime.now(UTC) + timedelta(seconds=ahead_s))).total_seconds()
        return ServiceProcess(
            settings,
            tmp_path / f"service-{run}.log",
            command=(sys.executable, "-m", "tests.integration.clocked_service"),
            extra_env={OFFSET_VARIABLE: str(offset)},
        ).start()

    items = _events()
    publish(settings, items[:2])  # the partners first: the service catches up with them before it is ready
    service = start(ahead_s=3600)  # an hour before the windows close: every event applies before both timers
    try:
        service.wait_ready()
        publish(settings, items[2:])
        wait_until_processed(settings, 120, [service])
        service.kill()
        service = start(ahead_s=10)  # the clock jumps ahead (never back): the windows close 10 s from now
        service.wait_ready()
        _wait_for(settings, service, lambda ds: sum("WAIT_FOR_TERM_END" in d["next_actions"] for d in ds) == CUSTOMERS)
        service.kill()
        service = start(ahead_s=0)  # the clock goes on from there: the expiry is 6 s after the windows' end
        service.wait_ready()
        _wait_for(settings, service, lambda ds: any(d["decided_at"] == parse_timestamp(EXPIRES_AT) for d in ds))
        service.kill()
        service = start(ahead_s=-60)
        service.wait_ready()
        marker = {**items[-1], "customer_id": "C-marker", "event_id": "gdap-marker"}
        publish(settings, [marker])
        wait_until_processed(settings, 120, [service])
        assert service.terminate() == 0, service.log_tail()
    finally:
        if service.alive():
            service.kill()

    decisions, _, _ = read_outputs(settings)
    got = [d for d in decisions if d["customer_id"] != "C-marker"]
    want = _expected(items)

    def key(d: dict[str, Any]) -> tuple[Any, ...]:
        return (d["customer_id"], d["subscription_id"])

    def compared(d: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(tuple(v) if isinstance(v, list) else v for v in (d[f] for f in COMPARED_DECISION_FIELDS))

    assert sorted(got, key=key) and [(key(d), compared(d)) for d in sorted(got, key=key)] == [
        (key(w.to_dict()), compared(w.to_dict())) for w in sorted(want, key=lambda w: key(w.to_dict()))
    ]
    fired = [d for d in got if d["caused_by_event_id"] is None]
    assert sorted((d["decided_at"], d["subscription_id"]) for d in fired) == sorted(
        [(WINDOW_CLOSES, "S-nce")] * CUSTOMERS
        + [(parse_timestamp(EXPIRES_AT), "S-legacy")] * CUSTOMERS
        + [(parse_timestamp(EXPIRES_AT), "S-nce")] * CUSTOMERS
    )
    last: dict[Any, Any] = {}
    for d in decisions:
        assert d["decided_at"] >= last.get(key(d), d["decided_at"]), d
        last[key(d)] = d["decided_at"]
    assert {d["rulebook_version"] for d in decisions} == {"2026-12.1"}

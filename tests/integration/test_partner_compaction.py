"""A late partner event survives the partner topic's compaction: the topic keeps the last *arrival*, an older
event, and the service's own partner table keeps the latest event by (occurred_at, event_id), so a restart
after compaction decides exactly what `classify` decides for the same events."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from config.settings import Settings
from tests.integration.pipeline import (
    ServiceProcess,
    by_account,
    by_subscription,
    expected_outputs,
    publish,
    read_outputs,
    read_topic,
    wait_until_processed,
)

SettingsFactory = Callable[..., Settings]


def _partner(eid: str, pid: str, program: str, at: str) -> dict[str, Any]:
    return {
        "event_type": "partner_program_changed",
        "event_id": eid,
        "occurred_at": at,
        "partner_id": pid,
        "program": program,
        "indirect_provider_ids": [],
    }


def _license(customer: str, at: str) -> dict[str, Any]:
    return {
        "event_type": "subscription_purchased",
        "event_id": f"buy-{customer}",
        "occurred_at": at,
        "partner_id": "P1",
        "customer_id": customer,
        "subscription_id": f"S-{customer}",
        "offer_id": "O365-E3",
        "billing_model": "license",
        "channel": "microsoft_direct",
        "quantity": 5,
        "term_start": "2026-01-01",
        "term_end": "2031-01-01",
    }


def _compact_hard(settings: Settings) -> None:
    """Make the partner topic's cleaner take every closed segment at once."""
    admin = AdminClient(settings.kafka_client_config())
    values = {"segment.ms": "100", "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0"}
    entries = [ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET) for name, value in values.items()]
    resource = ConfigResource(ResourceType.TOPIC, settings.partner_topic, incremental_configs=entries)
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def _records_of(settings: Settings, partner: str) -> list[bytes]:
    return [m.value() for m in read_topic(settings, settings.partner_topic) if m.key() == partner.encode()]


def test_a_restart_after_compaction_keeps_the_latest_partner_event(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """P1's newer event (csp_direct) arrives before its older one (none); the account is eligible live. The
    partner topic is compacted to the older record alone, the service restarts: the account is not re-decided,
    and a new account of P1 is decided under csp_direct, as `classify` decides for the same events."""
    settings = settings_factory(batch_size=50)
    _compact_hard(settings)
    items: list[dict[str, Any]] = [
        _partner("pe-new", "P1", "csp_direct", "2026-06-01T00:00:00Z"),
        _partner("pe-old", "P1", "none", "2026-01-01T00:00:00Z"),
        _license("C1", "2026-06-02T00:00:00Z"),
    ]
    publish(settings, items)
    service = ServiceProcess(settings, tmp_path / "service.log").start()
    try:
        service.wait_ready()
        wait_until_processed(settings, 120, [service])
        assert service.terminate() == 0, service.log_tail()
        before, _, _ = read_outputs(settings)
        assert [d["decision"] for d in before] == ["ELIGIBLE_FOR_RELATIONSHIP_REQUEST"]

        deadline = time.monotonic() + 120
        filler = 0
        while len(_records_of(settings, "P1")) > 1:  # each read is a broker round trip
            assert time.monotonic() < deadline, "the partner topic was not compacted"
            filler += 1  # appends roll the segments (segment.ms), so the cleaner may take the closed ones; partners
            # of eight ids land on every partition
            fillers = [_partner(f"pe-f{filler}-{j}", f"PF{j}", "advisor", "2026-01-01T00:00:00Z") for j in range(8)]
            publish(settings, fillers)
            items.extend(fillers)
        assert b"pe-old" in _records_of(settings, "P1")[0], "compaction kept the last arrival, the older event"

        service = ServiceProcess(settings, tmp_path / "service-restarted.log").start()
        service.wait_ready()
        marker = _license("C2", "2026-06-03T00:00:00Z")
        publish(settings, [marker])
        items.append(marker)
        wait_until_processed(settings, 120, [service])
        assert service.terminate() == 0, service.log_tail()
    finally:
        if service.alive():
            service.kill()

    decisions, statuses, _ = read_outputs(settings)
    want_decisions, want_statuses = expected_outputs(items)
    assert by_subscription(decisions) == by_subscription(want_decisions)
    assert by_account(statuses) == by_account(want_statuses)
    assert [d["decision"] for d in decisions] == ["ELIGIBLE_FOR_RELATIONSHIP_REQUEST"] * 2

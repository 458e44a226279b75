"""A restart is invisible in the committed decision stream: accounts whose term ends have passed are
restored as they were, so a restarted instance commits nothing for accounts that got no new input."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from config.settings import Settings
from tests.integration.pipeline import ServiceProcess, publish, read_outputs, wait_until_processed

SettingsFactory = Callable[..., Settings]


def _license(customer: str, sid: str, term_end: date, channel: str = "microsoft_direct") -> dict[str, Any]:
    return {
        "event_type": "subscription_purchased",
        "event_id": f"buy-{customer}-{sid}",
        "occurred_at": "2025-01-02T10:00:00Z",
        "partner_id": "PD",
        "customer_id": customer,
        "subscription_id": sid,
        "offer_id": "O365-E3",
        "billing_model": "license",
        "channel": channel,
        "quantity": 5,
        "term_start": "2025-01-01",
        "term_end": term_end.isoformat(),
    }


def _accounts(today: date) -> list[dict[str, Any]]:
    """Accounts whose licenses ended at different past days (each term end already passed when the
    purchase is applied), mixed with licenses still running."""
    items: list[dict[str, Any]] = [
        {
            "event_type": "partner_program_changed",
            "event_id": "pd-direct",
            "occurred_at": "2025-01-01T00:00:00Z",
            "partner_id": "PD",
            "program": "csp_direct",
            "indirect_provider_ids": [],
        }
    ]
    for c in range(24):
        customer = f"C-ended-{c}"
        for s in range(3):
            items.append(_license(customer, f"S{s}", today - timedelta(days=30 + 97 * s + 5 * c)))
        items.append(_license(customer, "S-running", today + timedelta(days=400 + c)))
    return items


def _marker(n: int) -> dict[str, Any]:
    return _license(f"C-marker-{n}", "S0", date(2031, 1, 1))


def test_restarted_instance_commits_nothing_for_accounts_without_new_input(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """Term ends passed and applied; the instance is SIGKILLed, then SIGTERMed, and restarted each time.
    After each restart, only the new marker account gets decisions: no restored account is re-decided,
    and no decided_at of a key goes backwards."""
    settings = settings_factory(batch_size=50)
    today = datetime.now(UTC).date()
    publish(settings, _accounts(today))
    service = ServiceProcess(settings, tmp_path / "service.log").start()
    try:
        service.wait_ready()
        wait_until_processed(settings, 120, [service])
        before, statuses_before, _ = read_outputs(settings)
        assert len(before) == 24 * 4
        assert {d["reason"] for d in before} >= {"TERM_ENDED"}

        for n, stop in enumerate(("kill", "terminate")):
            if stop == "kill":
                service.kill()
            else:
                assert service.terminate() == 0, service.log_tail()
            service = ServiceProcess(settings, tmp_path / f"service-{n}.log").start()
            service.wait_ready()
            publish(settings, [_marker(n)])  # its batch comes after the restored accounts' timers and reconcile
            wait_until_processed(settings, 120, [service])
            assert "partitions_restored" in service.log_path.read_text()
        assert service.terminate() == 0, service.log_tail()
    finally:
        if service.alive():
            service.kill()

    decisions, statuses, _ = read_outputs(settings)
    after_restarts = [d for d in decisions if not d["customer_id"].startswith("C-marker-")]
    assert len(after_restarts) == len(before), "a restored account was decided again"
    assert sorted(d["customer_id"] for d in decisions if d["customer_id"].startswith("C-marker-")) == [
        "C-marker-0",
        "C-marker-1",
    ]
    assert len([s for s in statuses if not s["customer_id"].startswith("C-marker-")]) == len(statuses_before)
    last: dict[Any, Any] = {}
    for d in decisions:
        key = (d["partner_id"], d["customer_id"], d["subscription_id"])
        assert d["decided_at"] >= last.get(key, d["decided_at"])
        last[key] = d["decided_at"]

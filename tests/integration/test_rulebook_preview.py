"""Preview equals rollout, on the real broker: a deployment runs `seed` over accounts that `current` reads
differently; `rules preview --to current` against it (and against the JSON-lines export of the same events)
lists the subscriptions that change; a restart of the service with MULTICHANNEL_RULEBOOK=current then commits
exactly those, once each, stamped 2026-12.1 with no causing event."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from config.settings import Settings
from tests.integration.pipeline import (
    PROJECT_ROOT,
    ServiceProcess,
    publish,
    read_outputs,
    settings_env,
    wait_until_processed,
)

SettingsFactory = Callable[..., Settings]
COMPARED = ("decision", "reason", "rule", "next_actions", "blocked_until", "relationship_via_partner_ids")


@dataclass(frozen=True)
class Sub:
    """A subscription of the workload and whether `current` decides it otherwise than `seed`."""

    sid: str
    changes: bool
    fields: dict[str, Any]


@dataclass(frozen=True)
class Acct:
    partner: str
    customer: str
    subs: tuple[Sub, ...]
    relationship: bool = False
    gdap_expires: int | None = None
    """Days from today at which the account's delegated admin (GDAP) grant ends; None: no grant."""
    extra: list[dict[str, Any]] = field(default_factory=list)


def _license(today: date, channel: str, seller: str | None = None, window: int | None = None) -> dict[str, Any]:
    """A license running from 60 days ago to 300 days on; `window`: NCE, its cancellation window's last day in
    days from today."""
    out: dict[str, Any] = {
        "billing_model": "license",
        "channel": channel,
        "quantity": 5,
        "term_start": (today - timedelta(days=60)).isoformat(),
        "term_end": (today + timedelta(days=300)).isoformat(),
    }
    if seller is not None:
        out["seller_partner_id"] = seller
    if window is not None:
        out |= {"commerce": "nce", "cancellation_allowed_until": (today + timedelta(days=window)).isoformat()}
    return out


def _usage(channel: str, seller: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"billing_model": "usage", "channel": channel}
    if seller is not None:
        out["seller_partner_id"] = seller
    return out


def accounts(today: date) -> list[Acct]:
    """PD is a direct Azure Expert MSP, PD2 a direct partner, PR a reseller of provider PP, PR0 a reseller with
    no provider, PX another CSP partner, PSYN a syndication partner."""
    held = _license(today, "csp", "PX")  # a legacy license held by another CSP partner

    def nce(window: int, channel: str = "csp") -> dict[str, Any]:
        return _license(today, channel, "PX" if channel == "csp" else None, window)

    direct = _license(today, "microsoft_direct")
    ea, azure = _usage("enterprise_agreement"), _usage("csp", "PX")
    return [
        Acct("PD", "C-nce-rel", (Sub("S1", True, nce(-20)), Sub("S2", False, held)), relationship=True),
        Acct("PD", "C-nce", (Sub("S1", True, nce(20)), Sub("S2", True, azure))),
        Acct("PD", "C-azure-rel", (Sub("S1", False, azure),), relationship=True),
        Acct("PD", "C-ea", (Sub("S1", True, ea),)),
        Acct("PD", "C-ea-rel", (Sub("S1", True, ea),), relationship=True),
        Acct("PD2", "C-ea-plain", (Sub("S1", False, ea),)),
        Acct("PD", "C-window", (Sub("S1", True, nce(-30, "open")), Sub("S2", False, nce(30, "open"))), True),
        Acct("PD", "C-same", (Sub("S1", False, direct), Sub("S2", False, _license(today, "syndication", "PSYN")))),
        Acct("PR", "C-res", (Sub("S1", True, direct),)),
        Acct("PR", "C-res-expired", (Sub("S1", True, direct),), relationship=True, gdap_expires=-3),
        Acct("PR", "C-res-gdap", (Sub("S1", False, direct),), relationship=True, gdap_expires=90),
        Acct("PR0", "C-orphan", (Sub("S1", False, direct), Sub("S2", True, nce(5)))),
        Acct(
            "PD",
            "C-cancelled",
            (Sub("S1", False, nce(20)),),
            extra=[{"event_type": "subscription_cancelled", "subscription_id": "S1"}],
        ),
    ]


def events(today: date) -> list[dict[str, Any]]:
    """The partner table, then each account's events, all ten days old."""
    at = f"{(today - timedelta(days=10)).isoformat()}T09:00:00Z"

    def partner(pid: str, program: str, providers: list[str] | None = None, expert: bool = False) -> dict[str, Any]:
        return {
            "event_type": "partner_program_changed",
            "event_id": f"prog-{pid}",
            "occurred_at": at,
            "partner_id": pid,
            "program": program,
            "indirect_provider_ids": providers or [],
            "azure_expert_msp": expert,
        }

    out = [
        partner("PD", "csp_direct", expert=True),
        partner("PD2", "csp_direct"),
        partner("PP", "csp_indirect_provider"),
        partner("PR", "csp_indirect_reseller", ["PP"]),
        partner("PR0", "csp_indirect_reseller"),
        partner("PX", "csp_direct"),
        partner("PSYN", "syndication"),
    ]
    for a in accounts(today):
        base = {"occurred_at": at, "partner_id": a.partner, "customer_id": a.customer}
        for s in a.subs:
            out.append(
                {
                    **base,
                    **s.fields,
                    "event_type": "subscription_purchased",
                    "event_id": f"buy-{a.customer}-{s.sid}",
                    "subscription_id": s.sid,
                    "offer_id": "O365-E3",
                }
            )
        if a.relationship:
            out.append({**base, "event_type": "relationship_accepted", "event_id": f"rel-{a.customer}"})
        if a.gdap_expires is not None:
            expires = f"{(today + timedelta(days=a.gdap_expires)).isoformat()}T00:00:00Z"
            out.append(
                {
                    **base,
                    "event_type": "delegated_admin_granted",
                    "event_id": f"gdap-{a.customer}",
                    "expires_at": expires,
                }
            )
        for n, extra in enumerate(a.extra):
            out.append({**base, "occurred_at": at.replace("09:", "10:"), **extra, "event_id": f"x{n}-{a.customer}"})
    return out


def preview(settings: Settings, out: Path, *args: str) -> list[dict[str, Any]]:
    """`multichannel rules preview --to current` with the deployment's settings; the rows it wrote."""
    done = subprocess.run(
        [
            str(PROJECT_ROOT / ".venv" / "bin" / "multichannel"),
            "rules",
            "preview",
            "--to",
            "current",
            "-o",
            str(out),
            *args,
        ],
        env=settings_env(settings) | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "What changes under rule book current 2026-12.1 (from seed 2026-11.1)" in done.stdout, done.stdout
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def as_change(row: dict[str, Any]) -> tuple[Any, ...]:
    """A committed decision or a preview's `to` side, as the fields a rollout and a preview share."""
    side = row.get("to", row)
    return (
        row["partner_id"],
        row["customer_id"],
        row["subscription_id"],
        *(tuple(v) if isinstance(v := side[f], list) else None if v is None else str(v) for f in COMPARED),
    )


def test_a_restart_with_current_commits_exactly_the_previewed_changes(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """Seed decides the workload; the preview of current against the live deployment, and against the export of
    its events, lists the expected subscriptions and the same rows; the restart with current commits those rows,
    each once, stamped 2026-12.1 and caused by no event, and nothing else besides the marker's decision."""
    today = datetime.now(UTC).date()
    stream = events(today)
    settings = settings_factory(batch_size=100)
    publish(settings, stream)
    export = tmp_path / "events.jsonl"
    export.write_text("".join(json.dumps(e) + "\n" for e in stream))
    service = ServiceProcess(settings, tmp_path / "seed.log").start()
    try:
        service.wait_ready()
        wait_until_processed(settings, 120, [service])
        seed_decisions, _statuses, _ = read_outputs(settings)
        live_rows = preview(settings, tmp_path / "live.jsonl", "--workers", "2")
        export_rows = preview(settings, tmp_path / "export.jsonl", "--events", str(export))
        assert service.terminate() == 0, service.log_tail()

        current = settings.model_copy(update={"rulebook": "current"})
        service = ServiceProcess(current, tmp_path / "current.log").start()
        service.wait_ready()
        marker = {
            **_license(today, "microsoft_direct"),
            "event_type": "subscription_purchased",
            "event_id": "buy-marker",
            "occurred_at": f"{today.isoformat()}T00:00:00Z",
            "partner_id": "PD",
            "customer_id": "C-marker",
            "subscription_id": "S-marker",
            "offer_id": "O365-E3",
        }
        publish(current, [marker])  # its batch comes after the restored accounts' re-evaluation
        wait_until_processed(current, 120, [service])
        assert service.terminate() == 0, service.log_tail()
    finally:
        if service.alive():
            service.kill()

    *live_changes, live_summary = live_rows
    *export_changes, export_summary = export_rows
    expected = {(a.partner, a.customer, s.sid) for a in accounts(today) for s in a.subs if s.changes}
    assert {(r["partner_id"], r["customer_id"], r["subscription_id"]) for r in live_changes} == expected
    assert sorted(live_changes, key=as_change) == sorted(export_changes, key=as_change)
    assert live_summary["saved_by"] == {"2026-11.1": len(accounts(today))} and export_summary["saved_by"] == {}
    for name in ("accounts", "subscriptions", "changed", "accounts_changed", "stale", "statuses"):
        assert live_summary[name] == export_summary[name], name
    assert live_summary["stale"] == 0

    decisions, _statuses, _ = read_outputs(settings)
    rollout = [d for d in decisions if d["rulebook_version"] != "2026-11.1" and d["customer_id"] != "C-marker"]
    assert [d for d in decisions if d["rulebook_version"] == "2026-11.1"] == seed_decisions
    assert {d["rulebook_version"] for d in rollout} == {"2026-12.1"}
    assert {d["caused_by_event_id"] for d in rollout} == {None}
    assert sorted(map(as_change, rollout)) == sorted(map(as_change, live_changes)), "the rollout is not the preview"

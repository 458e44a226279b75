"""Accounts whose verdicts differ between the rule books: the workload of the rule-book preview's bench.

Seeded contract events (JSON-lines dicts) over a population of accounts, with the mix that `current` reads
differently from `seed`: new-commerce licenses held by another CSP partner (T1, T2), Azure from another CSP
partner without a relationship (T3), Enterprise Agreement Azure of a direct Azure Expert MSP partner (E1,
E2), reseller accounts (their own invitation, GDAP grants that expire), cancellation windows open and
closed (R7, R10), beside subscriptions both books decide alike. Term dates are placed around `today`, so a
preview at the wall clock sees running terms, open and closed windows, and expired and running grants.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

EventDict = dict[str, Any]

DIRECT, EXPERT, PROVIDERS, RESELLERS, ORPHANS, OTHER_CSP = 40, 10, 10, 40, 2, 20
"""Partners per kind: direct ones (EXPERT of them Azure Expert MSP), indirect providers, resellers (ORPHANS of
them without a provider), and CSP partners that only ever sell to the accounts."""


def partner_events(today: date) -> list[EventDict]:
    """The partner table: every account partner and seller, as of a year before `today`."""
    at = f"{(today - timedelta(days=365)).isoformat()}T00:00:00Z"
    out: list[EventDict] = []

    def program(pid: str, name: str, providers: list[str] | None = None, expert: bool = False) -> None:
        event: EventDict = {
            "event_type": "partner_program_changed",
            "event_id": f"prog-{pid}",
            "occurred_at": at,
            "partner_id": pid,
            "program": name,
            "indirect_provider_ids": providers or [],
        }
        if expert:
            event["azure_expert_msp"] = True
        out.append(event)

    for i in range(DIRECT):
        program(f"PD{i}", "csp_direct", expert=i < EXPERT)
    for i in range(PROVIDERS):
        program(f"PP{i}", "csp_indirect_provider")
    for i in range(RESELLERS):
        program(f"PR{i}", "csp_indirect_reseller", [] if i < ORPHANS else [f"PP{i % PROVIDERS}"])
    for i in range(OTHER_CSP):
        program(f"PX{i}", "csp_direct")
    program("PSYN", "syndication")
    program("PNONE", "none")
    return out


def _partner_of(rng: random.Random) -> str:
    """An account partner: direct (a quarter of them Azure Expert MSPs), a provider or a reseller."""
    draw = rng.random()
    if draw < 0.45:
        return f"PD{rng.randrange(DIRECT)}"
    if draw < 0.55:
        return f"PP{rng.randrange(PROVIDERS)}"
    return f"PR{rng.randrange(RESELLERS)}"


def _purchase(rng: random.Random, today: date, partner: str) -> dict[str, Any]:
    """A subscription's fields: what it is, where it was bought, its term and window."""
    kind = rng.random()
    start = today - timedelta(days=rng.randrange(30, 300))
    end = today + timedelta(days=rng.randrange(30, 700))
    fields: dict[str, Any] = {"billing_model": "license", "quantity": rng.randrange(1, 50)}
    if kind < 0.25:  # a license from another CSP partner: T1/T2 when NCE, R7 otherwise
        fields |= {"channel": "csp", "seller_partner_id": f"PX{rng.randrange(OTHER_CSP)}"}
    elif kind < 0.40:  # Azure from another CSP partner: T3 without a relationship, R6 with one
        fields = {"billing_model": "usage", "channel": "csp", "seller_partner_id": f"PX{rng.randrange(OTHER_CSP)}"}
    elif kind < 0.55:  # Azure under an Enterprise Agreement: E1/E2 for an Expert MSP, R8 otherwise
        fields = {"billing_model": "usage", "channel": "enterprise_agreement"}
    elif kind < 0.85:  # a license bought from Microsoft or a volume channel: R9/R10
        fields["channel"] = rng.choice(("microsoft_direct", "open", "enterprise_agreement"))
    elif kind < 0.93:
        fields |= {"channel": "csp", "seller_partner_id": partner}  # R3 in both books
    else:
        fields |= {"channel": "syndication", "seller_partner_id": "PSYN"}  # R4 in both books
    if fields["billing_model"] == "license":
        fields |= {"term_start": start.isoformat(), "term_end": end.isoformat()}
        if rng.random() < 0.6:  # new commerce: a cancellation window, closed for most
            window = start + timedelta(days=rng.choice((3, 7, 400)))
            fields |= {"commerce": "nce", "cancellation_allowed_until": min(window, end).isoformat()}
    return fields


def account_events(rng: random.Random, today: date, n: int) -> list[EventDict]:
    """Account `n`'s events: one to three purchases, often a relationship, and for a reseller's account often a
    GDAP grant (expired for some)."""
    partner, customer = _partner_of(rng), f"C{n}"
    at = f"{(today - timedelta(days=20)).isoformat()}T{n % 24:02d}:00:00Z"
    base = {"occurred_at": at, "partner_id": partner, "customer_id": customer}
    out: list[EventDict] = []
    for s in range(rng.choice((1, 1, 2, 2, 3))):
        out.append(
            {
                **base,
                "event_type": "subscription_purchased",
                "event_id": f"buy-{n}-{s}",
                "subscription_id": f"S{s}",
                "offer_id": "O365-E3",
                **_purchase(rng, today, partner),
            }
        )
    if rng.random() < 0.5:
        out.append({**base, "event_type": "relationship_accepted", "event_id": f"rel-{n}"})
    if partner.startswith("PR") and rng.random() < 0.6:
        expires = today + timedelta(days=rng.choice((-10, -3, 90, 365)))
        out.append(
            {
                **base,
                "event_type": "delegated_admin_granted",
                "event_id": f"gdap-{n}",
                "expires_at": f"{expires.isoformat()}T00:00:00Z",
            }
        )
    return out


def preview_events(accounts: int, today: date, seed: int = 7) -> Iterator[EventDict]:
    """The partner table, then `accounts` accounts' events (the same seed, the same stream)."""
    rng = random.Random(seed)
    yield from partner_events(today)
    for n in range(accounts):
        yield from account_events(rng, today, n)

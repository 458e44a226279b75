"""A seeded, realistic workload: partners in every program, customers with subscriptions bought
through every channel, relationships, renewals, cancellations, partner program changes,
customers that are themselves partners, duplicates and a configurable share of bad records.

Events are contract dicts (the JSON-lines form of the events, see `docs/rules.md` and `schemas/`);
bad records are `BadRecord`s that say which dead-letter reason they must produce. The same seed and parameters
give the same stream, event for event.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

EventDict = dict[str, Any]

PROGRAM_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("csp_direct", 14),
    ("csp_indirect_provider", 6),
    ("csp_indirect_reseller", 40),
    ("advisor", 14),
    ("syndication", 6),
    ("none", 20),
)
CHANNEL_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("microsoft_direct", 18),
    ("enterprise_agreement", 10),
    ("open", 8),
    ("advisor", 12),
    ("csp", 28),
    ("third_party", 16),
    ("syndication", 8),
)
BAD_KINDS: tuple[str, ...] = ("SCHEMA_MISMATCH", "UNKNOWN_EVENT_TYPE", "INVALID_FIELD", "KEY_MISMATCH")


@dataclass(frozen=True)
class BadRecord:
    """A record that must end in the dead-letter topic with `reason`.

    `event` is the payload (a dict, or raw text for SCHEMA_MISMATCH); `key` overrides the record
    key (KEY_MISMATCH). Offline (JSON lines) there is no key to contradict, so a KEY_MISMATCH record
    is a valid event there.
    """

    reason: str
    event: EventDict | str
    key: str | None = None


@dataclass
class WorkloadSpec:
    """Size and mix of a generated stream."""

    seed: int = 42
    partners: int = 200
    customers: int = 2000
    start: datetime = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    days: int = 300
    bad_rate: float = 0.01
    duplicate_rate: float = 0.01
    partner_change_rate: float = 0.05
    max_events: int | None = None
    subscription_counts: tuple[int, ...] = (1, 1, 2, 2, 3, 4)
    """Subscriptions per account, drawn uniformly from these (the benchmark uses larger accounts)."""
    extra: dict[str, Any] = field(default_factory=dict)


def _pick(rng: random.Random, weights: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([w[0] for w in weights], [w[1] for w in weights])[0]


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class WorkloadGenerator:
    """Builds the stream of `WorkloadSpec`; iterate `events()` for contract dicts and `BadRecord`s."""

    def __init__(self, spec: WorkloadSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self._event_seq = 0
        self.partner_ids = [f"P{i:05d}" for i in range(spec.partners)]
        self.programs: dict[str, str] = {}
        self.providers: dict[str, list[str]] = {}
        self._assign_programs()

    def _next_id(self, prefix: str) -> str:
        self._event_seq += 1
        return f"{prefix}-{self.spec.seed}-{self._event_seq:09d}"

    def _assign_programs(self) -> None:
        rng = self.rng
        for pid in self.partner_ids:
            self.programs[pid] = _pick(rng, PROGRAM_WEIGHTS)
        providers = [p for p, prog in self.programs.items() if prog == "csp_indirect_provider"]
        for pid, prog in self.programs.items():
            if prog == "csp_indirect_reseller":
                k = rng.choice((0, 1, 1, 1, 2, 2, 3)) if providers else 0
                self.providers[pid] = rng.sample(providers, min(k, len(providers)))

    def _partner_event(self, pid: str, at: datetime) -> EventDict:
        prog = self.programs[pid]
        return {
            "event_type": "partner_program_changed",
            "event_id": self._next_id("pe"),
            "occurred_at": _ts(at),
            "partner_id": pid,
            "program": prog,
            "indirect_provider_ids": list(self.providers.get(pid, [])) if prog == "csp_indirect_reseller" else [],
        }

    def events(self) -> Iterator[EventDict | BadRecord]:
        """The whole stream: partner programs first, then customers' lives in time order (with some
        late arrivals), with partner changes, duplicates and bad records mixed in."""
        spec, rng = self.spec, self.rng
        emitted = 0
        for pid in self.partner_ids:
            yield self._partner_event(pid, spec.start - timedelta(days=1))
            emitted += 1
        timeline: list[tuple[datetime, int, EventDict]] = []
        seq = 0
        csp_partners = [p for p, prog in self.programs.items() if prog.startswith("csp_")]
        account_partners = csp_partners * 4 + self.partner_ids
        for c in range(spec.customers):
            # about 2% of customers are partners themselves (R1)
            cid = rng.choice(self.partner_ids) if rng.random() < 0.02 else f"C{c:07d}"
            for pid in rng.sample(account_partners, rng.choice((1, 1, 1, 2))):
                for at, ev in self._account_life(pid, cid):
                    seq += 1
                    timeline.append((at, seq, ev))
        n_changes = int(len(self.partner_ids) * spec.partner_change_rate)
        for _ in range(n_changes):
            pid = rng.choice(self.partner_ids)
            self.programs[pid] = _pick(rng, PROGRAM_WEIGHTS)
            if self.programs[pid] == "csp_indirect_reseller":
                provs = [p for p, prog in self.programs.items() if prog == "csp_indirect_provider" and p != pid]
                self.providers[pid] = rng.sample(provs, min(len(provs), rng.choice((0, 1, 2))))
            at = spec.start + timedelta(days=rng.uniform(0, spec.days))
            seq += 1
            timeline.append((at, seq, self._partner_event(pid, at)))
        timeline.sort(key=lambda item: (item[0], item[1]))
        # late arrivals: swap a few neighbours so arrival order differs from event time
        for i in range(0, len(timeline) - 1, 37):
            if rng.random() < 0.3:
                timeline[i], timeline[i + 1] = timeline[i + 1], timeline[i]
        recent: list[EventDict] = []
        for _at, _seq, ev in timeline:
            if spec.max_events is not None and emitted >= spec.max_events:
                return
            yield ev
            emitted += 1
            recent.append(ev)
            if len(recent) > 50:
                recent.pop(0)
            if rng.random() < spec.duplicate_rate:
                yield dict(rng.choice(recent))
                emitted += 1
            if rng.random() < spec.bad_rate:
                yield self._bad_record(rng.choice(recent) if recent else None)
                emitted += 1

    def _account_life(self, pid: str, cid: str) -> Iterator[tuple[datetime, EventDict]]:
        spec, rng = self.spec, self.rng
        base = {"partner_id": pid, "customer_id": cid}

        def event(kind: str, at: datetime, **fields: Any) -> tuple[datetime, EventDict]:
            return at, {"event_type": kind, "event_id": self._next_id("ev"), "occurred_at": _ts(at), **base, **fields}

        first = spec.start + timedelta(days=rng.uniform(0, spec.days * 0.6), seconds=rng.randrange(86_400))
        for s in range(rng.choice(spec.subscription_counts)):
            sid = f"S-{cid}-{pid}-{s}"
            at = first + timedelta(hours=rng.uniform(0, 240))
            channel = _pick(rng, CHANNEL_WEIGHTS)
            usage = rng.random() < 0.3
            purchase: dict[str, Any] = {
                "subscription_id": sid,
                "offer_id": rng.choice(("O365-E3", "M365-BP", "AZURE-PLAN", "D365-SALES", "TEAMS-ESS")),
                "billing_model": "usage" if usage else "license",
                "channel": channel,
            }
            if channel == "csp":
                purchase["seller_partner_id"] = pid if rng.random() < 0.35 else rng.choice(self.partner_ids)
            elif channel == "third_party" or (channel in ("advisor", "syndication") and rng.random() < 0.7):
                purchase["seller_partner_id"] = pid if rng.random() < 0.3 else rng.choice(self.partner_ids)
            term_end: date | None = None
            if not usage:
                term_start = (at - timedelta(days=rng.randrange(0, 200))).date()
                term_end = term_start + timedelta(days=rng.choice((30, 365, 365, 1095)))
                purchase.update(
                    quantity=rng.randint(1, 500), term_start=term_start.isoformat(), term_end=term_end.isoformat()
                )
            yield event("subscription_purchased", at, **purchase)
            if term_end is not None and rng.random() < 0.2:
                new_end = term_end + timedelta(days=365)
                yield event(
                    "subscription_renewed",
                    at + timedelta(days=rng.uniform(1, 120)),
                    subscription_id=sid,
                    term_end=new_end.isoformat(),
                )
            if rng.random() < 0.1:
                yield event("subscription_cancelled", at + timedelta(days=rng.uniform(0, 90)), subscription_id=sid)
        if rng.random() < 0.45:
            accepted = first + timedelta(days=rng.uniform(1, 60))
            yield event("relationship_accepted", accepted)
            if rng.random() < 0.1:
                yield event("relationship_ended", accepted + timedelta(days=rng.uniform(1, 90)))
        if self.programs.get(pid) == "csp_indirect_reseller" and rng.random() < 0.35:
            granted = first + timedelta(days=rng.uniform(1, 60))
            yield event("delegated_admin_granted", granted)
            if rng.random() < 0.1:
                yield event("delegated_admin_revoked", granted + timedelta(days=rng.uniform(1, 60)))

    def _bad_record(self, template: EventDict | None) -> BadRecord:
        rng = self.rng
        kind = rng.choice(BAD_KINDS)
        good: EventDict = dict(template) if template else {"event_type": "relationship_accepted"}
        good["event_id"] = self._next_id("bad")
        good.setdefault("occurred_at", _ts(self.spec.start))
        good.setdefault("partner_id", self.partner_ids[0])
        good.setdefault("customer_id", "C-bad")
        if kind == "SCHEMA_MISMATCH":
            return BadRecord(kind, "{not json" + good["event_id"])
        if kind == "UNKNOWN_EVENT_TYPE":
            good["event_type"] = "subscription_teleported"
            return BadRecord(kind, good)
        if kind == "KEY_MISMATCH" and "customer_id" in good and good.get("event_type") != "partner_program_changed":
            return BadRecord(kind, good, key=str(good["customer_id"]) + "-other")
        # INVALID_FIELD: an impossible term, or an empty id
        if good.get("event_type") == "subscription_purchased" and good.get("billing_model") == "license":
            good["term_end"] = good["term_start"]
        else:
            good["event_id"] = ""
        return BadRecord("INVALID_FIELD", good)

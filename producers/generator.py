"""A seeded workload: partners in every program, customers with subscriptions bought
through every channel, relationships, renewals, cancellations, partner program changes,
customers that are themselves partners, duplicates and a configurable share of bad records.

Two shapes (`WorkloadSpec.shape`):

- `uniform`: small accounts (`subscription_counts`), terms of 30/365/1095 days from any day, partner
  changes mostly in order. Benchmarks and tests compare against it, so it stays the same stream.
- `realistic`: what CSP data looks like. Account sizes are heavy-tailed (most accounts hold 1-10
  subscriptions, a few thousands, some 10,000 or more), license terms run from the 1st of a month to
  the 1st of a later month (1, 12 or 36 months, so many terms end at the same midnight), and a share
  of partner program changes arrives after a newer change of the same partner.

`storm_events` adds a month-end storm: many license purchases whose terms all end at one midnight.

The input fields of contract 1.1, which the `current` rule book reads, come in a mix of their own
(`WorkloadSpec.nce_fraction`, `expert_msp_fraction`, `ea_azure_fraction`, `gdap_expiry`; `MIXES` names the
two mixes): new-commerce licenses with a cancellation window, Azure Expert MSP partners whose customers hold
Enterprise Agreement Azure, delegated-admin grants that expire. They are drawn from a random generator of
their own: the fields alone (`ea_azure_fraction` 0) leave every event of the stream as it was, with the fields
added; the extra Enterprise Agreement purchases add events (and so move arrival swaps, duplicates and bad
records). With every one off (the `seed` mix, the default) the stream has no contract-1.1 field and is the
one it always was, record for record.

Events are contract dicts (the JSON-lines form of the events, see `docs/rules.md` and `schemas/`);
bad records are `BadRecord`s that say which dead-letter reason they must produce. The same seed and parameters
give the same stream, event for event.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from typing import Any, Literal

EventDict = dict[str, Any]
Shape = Literal["uniform", "realistic"]
SHAPES: tuple[Shape, ...] = ("uniform", "realistic")
Mix = Literal["seed", "current"]
MIXES: dict[Mix, dict[str, Any]] = {
    "seed": {"nce_fraction": 0.0, "expert_msp_fraction": 0.0, "ea_azure_fraction": 0.0, "gdap_expiry": False},
    "current": {"nce_fraction": 0.6, "expert_msp_fraction": 0.3, "ea_azure_fraction": 0.5, "gdap_expiry": True},
}
"""The `WorkloadSpec` fields of each mix of contract-1.1 input: `seed` writes none of those fields (contract 1.0,
as every stream before them), `current` what Partner Center holds now: most licenses on new commerce, some
direct partners certified as Azure Expert MSP, every delegated-admin grant a GDAP one with an end."""
GDAP_DAYS = (30.0, 730.0)
"""A GDAP grant lasts from a month to two years (the longest Partner Center allows), drawn uniformly."""

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

# The realistic shape.
TERM_MONTH_WEIGHTS: tuple[tuple[int, int], ...] = ((1, 3), (12, 6), (36, 1))
"""New-commerce term lengths in months: monthly and annual terms are common, three-year terms rare."""
LICENSE_OFFERS: tuple[str, ...] = ("O365-E3", "M365-BP", "D365-SALES", "TEAMS-ESS")
USAGE_OFFER = "AZURE-PLAN"
LARGE_ACCOUNT = 1_000
"""From this many subscriptions on, an account buys like an enterprise: 90% of its subscriptions follow one
profile, Azure usage through an Enterprise Agreement or licenses through one CSP partner."""
GUARANTEED_SIZE = 10_000
GUARANTEE_MIN_ACCOUNTS = 1_000
"""A realistic spec with at least this many accounts holds one of `GUARANTEED_SIZE` or more (see `WorkloadSpec`)."""


_CHANNELS = tuple(name for name, _w in CHANNEL_WEIGHTS)
_CHANNEL_CUM = tuple(accumulate(w for _name, w in CHANNEL_WEIGHTS))
_TERM_MONTHS = tuple(months for months, _w in TERM_MONTH_WEIGHTS)
_TERM_CUM = tuple(accumulate(w for _months, w in TERM_MONTH_WEIGHTS))
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class _SecondsClock:
    """Whole seconds since the epoch to the contract's strings, memoised per day and per month (formatting a
    timestamp with `strftime` costs more than building the event)."""

    __slots__ = ("_days", "_firsts", "_months", "start")

    def __init__(self, start: datetime) -> None:
        self.start = int(start.timestamp())
        self._days: dict[int, str] = {}
        self._months: dict[int, int] = {}
        self._firsts: dict[int, str] = {}

    def timestamp(self, second: int) -> str:
        """`2026-03-01T09:30:00Z`."""
        day, rest = divmod(second, 86_400)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = self._days[day] = date.fromordinal(_EPOCH_ORDINAL + day).isoformat() + "T"
        hours, rest = divmod(rest, 3_600)
        minutes, seconds = divmod(rest, 60)
        return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}Z"

    def datetime(self, second: int) -> datetime:
        return datetime.fromtimestamp(second, UTC)

    def month_of(self, day: int) -> int:
        """The month (year * 12 + month - 1) of a day since the epoch."""
        month = self._months.get(day)
        if month is None:
            d = date.fromordinal(_EPOCH_ORDINAL + day)
            month = self._months[day] = d.year * 12 + d.month - 1
        return month

    def first_of(self, month: int) -> str:
        """`2026-03-01`: the 1st of a month (year * 12 + month - 1)."""
        text = self._firsts.get(month)
        if text is None:
            year, m = divmod(month, 12)
            text = self._firsts[month] = f"{year:04d}-{m + 1:02d}-01"
        return text


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
    """Subscriptions per account, drawn uniformly from these (the benchmark uses larger accounts); `uniform` only."""
    extra: dict[str, Any] = field(default_factory=dict)
    shape: Shape = "uniform"
    """`uniform` (the stream benchmarks and tests were built on) or `realistic` (see the module docstring)."""
    max_subscriptions: int = 20_000
    """`realistic`: the cap of the heavy-tailed account-size draw.

    An account's size is `min(max_subscriptions, floor(1 / (1 - U)))` for U uniform in [0, 1), a Zipf-like
    tail with P(size >= k) = 1/k: half the accounts hold one subscription, 90% at most ten, one in a
    thousand a thousand or more. Rule of the guarantee: when the spec has at least 1,000 accounts
    (`GUARANTEE_MIN_ACCOUNTS`, giant accounts not counted) and `max_subscriptions` >= 10,000 but no
    account drew 10,000, the largest draw (the first, on a tie) is raised to 10,000. `max_events` can
    cut any account short."""
    giant_accounts: tuple[int, ...] = ()
    """Sizes of extra accounts, one each (e.g. `(50_000,)`), on top of the `customers`' accounts and not capped
    by `max_subscriptions`: customers `C{customers + i}` of a CSP partner. Both shapes; none by default."""
    late_partner_rate: float = 0.3
    """`realistic`: the share of partner program changes delivered after a newer change of the same partner
    (an older `occurred_at` arriving after a newer one), so that a partner's last-arriving event can be an
    older one. Only a change with a newer one can be late; at least one is when the rate is above 0 and
    one can be."""
    nce_fraction: float = 0.0
    """The share of license purchases on new commerce (`commerce` `nce`, with `cancellation_allowed_until`
    `cancellation_days` after the term's start, and their renewals the same after the new term's start); the
    others are `legacy`. 0: purchases carry no `commerce` field at all. Both shapes."""
    cancellation_days: int = 7
    """The last day of a new-commerce term's cancellation window, in days after the term's start. Terms start
    up to 200 days before their purchase, so most windows have closed when the purchase is made and some are
    still open; a renewal's window opens when the new term starts, after the renewal."""
    expert_msp_fraction: float = 0.0
    """The share of partners certified as Azure Expert MSP: their partner events say `azure_expert_msp` true
    while their program is `csp_direct` (false otherwise). 0: partner events carry no such field."""
    ea_azure_fraction: float = 0.0
    """The share of the accounts of an Azure Expert MSP (`csp_direct` when the account is drawn) that also buy
    Azure under the customer's Enterprise Agreement: one more purchase each, after the account's others,
    subscription `S-{customer}-{partner}-ea` and event id `ea-{seed}-{n}`, what the billing transfer of E1 and
    E2 is for."""
    gdap_expiry: bool = False
    """Delegated-admin grants carry `expires_at`, `GDAP_DAYS` after the grant."""

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, not {self.shape!r}")
        if self.max_subscriptions < 1:
            raise ValueError("max_subscriptions must be at least 1")
        if any(size < 1 for size in self.giant_accounts):
            raise ValueError("every giant account needs at least 1 subscription")
        if not 0.0 <= self.late_partner_rate <= 1.0:
            raise ValueError("late_partner_rate must be between 0 and 1")
        for name in ("nce_fraction", "expert_msp_fraction", "ea_azure_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.cancellation_days < 0:
            raise ValueError("cancellation_days must not be negative")


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
        self.late_partner_event_ids: list[str] = []
        """`realistic`: the partner changes delivered after a newer change of their partner (filled by `events()`)."""
        self._assign_programs()
        self.mix_rng = random.Random(f"{spec.seed}-contract-1.1")
        """Draws the contract-1.1 fields alone, so that they never move a draw of `rng`."""
        self.expert_msp = frozenset(
            pid
            for pid in self.partner_ids
            if spec.expert_msp_fraction and self.mix_rng.random() < spec.expert_msp_fraction
        )
        """The partners certified as Azure Expert MSP (`expert_msp_fraction` of them)."""
        self._ea_seq = 0

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
        event: EventDict = {
            "event_type": "partner_program_changed",
            "event_id": self._next_id("pe"),
            "occurred_at": _ts(at),
            "partner_id": pid,
            "program": prog,
            "indirect_provider_ids": list(self.providers.get(pid, [])) if prog == "csp_indirect_reseller" else [],
        }
        if self.spec.expert_msp_fraction:
            event["azure_expert_msp"] = prog == "csp_direct" and pid in self.expert_msp
        return event

    def _commerce(self, purchase: EventDict, term_start: date) -> None:
        """A license purchase's contract-1.1 fields: `nce` for `nce_fraction` of them, with its cancellation window."""
        if self.mix_rng.random() < self.spec.nce_fraction:
            purchase["commerce"] = "nce"
            purchase["cancellation_allowed_until"] = self._window(term_start)
        else:
            purchase["commerce"] = "legacy"

    def _window(self, term_start: date) -> str:
        """The last day of the cancellation window of a new-commerce term starting on `term_start`."""
        return (term_start + timedelta(days=self.spec.cancellation_days)).isoformat()

    def _ea_azure(self, pid: str, cid: str, at: str) -> EventDict | None:
        """The extra Enterprise Agreement Azure purchase of an Azure Expert MSP's account, for `ea_azure_fraction`
        of them (None for the others and for every other partner's)."""
        spec = self.spec
        if not (pid in self.expert_msp and self.programs[pid] == "csp_direct"):
            return None
        if self.mix_rng.random() >= spec.ea_azure_fraction:
            return None
        self._ea_seq += 1
        return {
            "event_type": "subscription_purchased",
            "event_id": f"ea-{spec.seed}-{self._ea_seq:09d}",
            "occurred_at": at,
            "partner_id": pid,
            "customer_id": cid,
            "subscription_id": f"S-{cid}-{pid}-ea",
            "offer_id": USAGE_OFFER,
            "billing_model": "usage",
            "channel": "enterprise_agreement",
        }

    def _gdap_days(self) -> float:
        """How long a delegated-admin grant lasts, in days."""
        return self.mix_rng.uniform(*GDAP_DAYS)

    def events(self) -> Iterator[EventDict | BadRecord]:
        """The whole stream: partner programs first, then customers' lives in time order (with some
        late arrivals), with partner changes, duplicates and bad records mixed in."""
        if self.spec.shape == "realistic":
            return self._realistic_events()
        return self._uniform_events()

    def _uniform_events(self) -> Iterator[EventDict | BadRecord]:
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
        for i, size in enumerate(spec.giant_accounts):
            pid = rng.choice(csp_partners or self.partner_ids)
            for at, ev in self._account_life(pid, f"C{spec.customers + i:07d}", size):
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

    def _account_life(self, pid: str, cid: str, size: int | None = None) -> Iterator[tuple[datetime, EventDict]]:
        spec, rng = self.spec, self.rng
        base = {"partner_id": pid, "customer_id": cid}

        def event(kind: str, at: datetime, **fields: Any) -> tuple[datetime, EventDict]:
            return at, {"event_type": kind, "event_id": self._next_id("ev"), "occurred_at": _ts(at), **base, **fields}

        first = spec.start + timedelta(days=rng.uniform(0, spec.days * 0.6), seconds=rng.randrange(86_400))
        for s in range(rng.choice(spec.subscription_counts) if size is None else size):
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
                if spec.nce_fraction:
                    self._commerce(purchase, term_start)
            yield event("subscription_purchased", at, **purchase)
            if term_end is not None and rng.random() < 0.2:
                new_end = term_end + timedelta(days=365)
                window = (
                    {"cancellation_allowed_until": self._window(term_end)}
                    if "cancellation_allowed_until" in purchase
                    else {}
                )
                yield event(
                    "subscription_renewed",
                    at + timedelta(days=rng.uniform(1, 120)),
                    subscription_id=sid,
                    term_end=new_end.isoformat(),
                    **window,
                )
            if rng.random() < 0.1:
                yield event("subscription_cancelled", at + timedelta(days=rng.uniform(0, 90)), subscription_id=sid)
        if spec.ea_azure_fraction:
            at = first + timedelta(hours=self.mix_rng.uniform(0, 240))
            if (azure := self._ea_azure(pid, cid, _ts(at))) is not None:
                yield at, azure
        if rng.random() < 0.45:
            accepted = first + timedelta(days=rng.uniform(1, 60))
            yield event("relationship_accepted", accepted)
            if rng.random() < 0.1:
                yield event("relationship_ended", accepted + timedelta(days=rng.uniform(1, 90)))
        if self.programs.get(pid) == "csp_indirect_reseller" and rng.random() < 0.35:
            granted = first + timedelta(days=rng.uniform(1, 60))
            expiry = {"expires_at": _ts(granted + timedelta(days=self._gdap_days()))} if spec.gdap_expiry else {}
            yield event("delegated_admin_granted", granted, **expiry)
            if rng.random() < 0.1:
                yield event("delegated_admin_revoked", granted + timedelta(days=rng.uniform(1, 60)))

    # ------------------------------------------------------------------ the realistic shape
    def _realistic_events(self) -> Iterator[EventDict | BadRecord]:
        """Partner programs first, then every account's life and the partner changes in arrival order
        (late partner changes after a newer change of their partner), duplicates and bad records mixed in
        as in the uniform shape. Times are whole seconds."""
        spec, rng = self.spec, self.rng
        emitted = 0
        for pid in self.partner_ids:
            yield self._partner_event(pid, spec.start - timedelta(days=1))
            emitted += 1
        clock = _SecondsClock(spec.start)
        timeline: list[tuple[int, int, EventDict]] = []
        for pid, cid, size in list(self._realistic_accounts()):  # every size drawn before any life
            self._realistic_life(pid, cid, size, clock, timeline)
        self._realistic_partner_changes(clock, timeline)
        timeline.sort()  # (arrival second, sequence): the events themselves are never compared
        # late arrivals of account events: swap a few neighbours (never a partner change: their
        # arrival order is the one `_realistic_partner_changes` chose)
        for i in range(0, len(timeline) - 1, 37):
            if (
                rng.random() < 0.3
                and timeline[i][2]["event_type"] != "partner_program_changed"
                and timeline[i + 1][2]["event_type"] != "partner_program_changed"
            ):
                timeline[i], timeline[i + 1] = timeline[i + 1], timeline[i]
        recent: deque[EventDict] = deque(maxlen=50)
        max_events, duplicate_rate, bad_rate = spec.max_events, spec.duplicate_rate, spec.bad_rate
        random_ = rng.random
        for _at, _seq, ev in timeline:
            if max_events is not None and emitted >= max_events:
                return
            yield ev
            emitted += 1
            recent.append(ev)
            if random_() < duplicate_rate:
                yield dict(rng.choice(recent))
                emitted += 1
            if random_() < bad_rate:
                yield self._bad_record(rng.choice(recent))
                emitted += 1

    def account_sizes(self) -> list[tuple[str, str, int]]:
        """`realistic`: every account as (partner_id, customer_id, subscriptions), drawn exactly as
        `events()` draws them (call it on a fresh generator of the same spec, instead of `events()`)."""
        return list(self._realistic_accounts())

    def _realistic_accounts(self) -> Iterator[tuple[str, str, int]]:
        """The customers' accounts (a Zipf-like size each, see `WorkloadSpec.max_subscriptions`), then
        the giant ones. An account appears once: a repeated (partner, customer) draw is dropped."""
        spec, rng = self.spec, self.rng
        csp_partners = [p for p, prog in self.programs.items() if prog.startswith("csp_")]
        account_partners = csp_partners * 4 + self.partner_ids
        cap, random_ = spec.max_subscriptions, rng.random
        accounts: list[list[Any]] = []
        seen: set[tuple[str, str]] = set()
        for c in range(spec.customers):
            # about 2% of customers are partners themselves (R1)
            cid = rng.choice(self.partner_ids) if random_() < 0.02 else f"C{c:07d}"
            for pid in rng.sample(account_partners, rng.choice((1, 1, 1, 2))):
                size = min(cap, int(1.0 / (1.0 - random_())))
                if pid != cid and (pid, cid) not in seen:
                    seen.add((pid, cid))
                    accounts.append([pid, cid, size])
        if (
            len(accounts) >= GUARANTEE_MIN_ACCOUNTS
            and cap >= GUARANTEED_SIZE
            and max(a[2] for a in accounts) < GUARANTEED_SIZE
        ):
            biggest = max(range(len(accounts)), key=lambda i: accounts[i][2])
            accounts[biggest][2] = GUARANTEED_SIZE
        for pid, cid, size in accounts:
            yield pid, cid, size
        for i, size in enumerate(spec.giant_accounts):
            yield rng.choice(csp_partners or self.partner_ids), f"C{spec.customers + i:07d}", size

    def _realistic_life(
        self, pid: str, cid: str, size: int, clock: _SecondsClock, out: list[tuple[int, int, EventDict]]
    ) -> None:
        """One account's events, appended to `out` as (second, sequence, event)."""
        spec, rng = self.spec, self.rng
        random_, choice, next_id, ts = rng.random, rng.choice, self._next_id, clock.timestamp
        partner_ids = self.partner_ids
        n_partners = len(partner_ids)
        n_offers = len(LICENSE_OFFERS)

        def add(kind: str, at: int, **fields: Any) -> None:
            ev = {
                "event_type": kind,
                "event_id": next_id("ev"),
                "occurred_at": ts(at),
                "partner_id": pid,
                "customer_id": cid,
                **fields,
            }
            out.append((at, len(out), ev))

        first = clock.start + int(random_() * spec.days * 0.6 * 86_400)
        profile: str | None = None
        profile_seller = pid
        if size >= LARGE_ACCOUNT:
            profile = "ea_usage" if random_() < 0.5 else "csp_license"
            csp_partners = [p for p, prog in self.programs.items() if prog.startswith("csp_")]
            profile_seller = choice(csp_partners) if csp_partners else pid
        for s in range(size):
            sid = f"S-{cid}-{pid}-{s}"
            at = first + int(random_() * 864_000)  # within 240 hours of the account's first purchase
            seller: str | None = None
            if profile is not None and random_() < 0.9:
                if profile == "ea_usage":
                    channel, usage, offer = "enterprise_agreement", True, USAGE_OFFER
                else:
                    channel, usage, offer, seller = (
                        "csp",
                        False,
                        LICENSE_OFFERS[int(random_() * n_offers)],
                        profile_seller,
                    )
            else:
                channel = _CHANNELS[bisect(_CHANNEL_CUM, random_() * _CHANNEL_CUM[-1])]
                usage = random_() < 0.3
                offer = USAGE_OFFER if usage else LICENSE_OFFERS[int(random_() * n_offers)]
                if channel == "csp":
                    seller = pid if random_() < 0.35 else partner_ids[int(random_() * n_partners)]
                elif channel == "third_party" or (channel in ("advisor", "syndication") and random_() < 0.7):
                    seller = pid if random_() < 0.3 else partner_ids[int(random_() * n_partners)]
            purchase: dict[str, Any] = {
                "subscription_id": sid,
                "offer_id": offer,
                "billing_model": "usage" if usage else "license",
                "channel": channel,
            }
            if seller is not None:
                purchase["seller_partner_id"] = seller
            if usage:
                add("subscription_purchased", at, **purchase)
            else:
                months = _TERM_MONTHS[bisect(_TERM_CUM, random_() * _TERM_CUM[-1])]
                # a monthly term starts on the 1st of the purchase's month, a longer one up to 200 days earlier
                back = 0 if months == 1 else int(random_() * 200)
                start_month = clock.month_of(at // 86_400 - back)
                end_month = start_month + months
                purchase["quantity"] = 1 + int(random_() * 500)
                purchase["term_start"] = clock.first_of(start_month)
                purchase["term_end"] = clock.first_of(end_month)
                if spec.nce_fraction:
                    self._commerce(purchase, date.fromisoformat(purchase["term_start"]))
                add("subscription_purchased", at, **purchase)
                if random_() < 0.2:
                    renewed = at + int((1 + random_() * 119) * 86_400)
                    window = (
                        {"cancellation_allowed_until": self._window(date.fromisoformat(purchase["term_end"]))}
                        if "cancellation_allowed_until" in purchase
                        else {}
                    )
                    add(
                        "subscription_renewed",
                        renewed,
                        subscription_id=sid,
                        term_end=clock.first_of(end_month + months),
                        **window,
                    )
            if random_() < 0.1:
                add("subscription_cancelled", at + int(random_() * 90 * 86_400), subscription_id=sid)
        if spec.ea_azure_fraction:
            at = first + int(self.mix_rng.random() * 864_000)
            if (azure := self._ea_azure(pid, cid, ts(at))) is not None:
                out.append((at, len(out), azure))
        if random_() < 0.45:
            accepted = first + int((1 + random_() * 59) * 86_400)
            add("relationship_accepted", accepted)
            if random_() < 0.1:
                add("relationship_ended", accepted + int((1 + random_() * 89) * 86_400))
        if self.programs.get(pid) == "csp_indirect_reseller" and random_() < 0.35:
            granted = first + int((1 + random_() * 59) * 86_400)
            expiry = {"expires_at": ts(granted + int(self._gdap_days() * 86_400))} if spec.gdap_expiry else {}
            add("delegated_admin_granted", granted, **expiry)
            if random_() < 0.1:
                add("delegated_admin_revoked", granted + int((1 + random_() * 59) * 86_400))

    def _realistic_partner_changes(self, clock: _SecondsClock, out: list[tuple[int, int, EventDict]]) -> None:
        """`partners * partner_change_rate` partners (at least one when the rate is above 0) change program
        2-4 times each within `days`. Each change but a partner's newest is late with probability
        `late_partner_rate * changes / (changes - partners changing)` (so that `late_partner_rate` of all
        changes are late): it arrives 1 minute to 3 days after that partner's newest change. The ids of
        the late ones are kept in `late_partner_event_ids`."""
        spec, rng = self.spec, self.rng
        if spec.partner_change_rate <= 0:
            return
        n_partners = min(len(self.partner_ids), max(1, int(len(self.partner_ids) * spec.partner_change_rate)))
        changes: list[list[tuple[int, EventDict]]] = []
        for pid in rng.sample(self.partner_ids, n_partners):
            times = sorted(
                clock.start + int(rng.random() * spec.days * 86_400) for _ in range(rng.choice((2, 2, 3, 4)))
            )
            own: list[tuple[int, EventDict]] = []
            for at in times:
                self.programs[pid] = _pick(rng, PROGRAM_WEIGHTS)
                if self.programs[pid] == "csp_indirect_reseller":
                    provs = [p for p, prog in self.programs.items() if prog == "csp_indirect_provider" and p != pid]
                    self.providers[pid] = rng.sample(provs, min(len(provs), rng.choice((0, 1, 2))))
                own.append((at, self._partner_event(pid, clock.datetime(at))))
            changes.append(own)
        total = sum(len(own) for own in changes)
        eligible = total - len(changes)
        share = min(1.0, spec.late_partner_rate * total / eligible) if eligible else 0.0
        arrivals: list[list[int]] = []  # per partner, per change: the second it arrives
        any_late = False
        for own in changes:
            newest = own[-1][0]
            arrival = [at for at, _ev in own]
            for i in range(len(own) - 1):
                if rng.random() < share:
                    arrival[i] = newest + 60 + int(rng.random() * 3 * 86_400)
                    any_late = True
            arrivals.append(arrival)
        if share > 0 and not any_late:  # the promised one: the first changing partner's oldest change
            arrivals[0][0] = changes[0][-1][0] + 60
        for own, arrival in zip(changes, arrivals, strict=True):
            for (at, ev), arrives in zip(own, arrival, strict=True):
                out.append((arrives, len(out), ev))
                if arrives != at:
                    self.late_partner_event_ids.append(ev["event_id"])

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


def _add_months(day: date, months: int) -> date:
    """`day` moved by `months` (negative: back), on the last day of the month when it has no such day."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    following = date(year + (month == 12), month % 12 + 1, 1)
    return date(year, month, min(day.day, (following - timedelta(days=1)).day))


def storm_events(
    n: int, accounts: int, end: date, seed: int = 42, *, partners: int = 100, with_programs: bool = False
) -> Iterator[EventDict]:
    """A month-end storm: `n` license purchases spread evenly over `accounts` accounts, every term ending
    at midnight UTC of `end` (typically the 1st of a month), so that every term-end timer is due at once.

    Purchase `j` goes to account `j % accounts`, that is partner `P{account % partners}` and customer
    `C{account}` (the generator's id schemes); it is a `csp` license sold by another of the `partners`
    partners, with a 1-, 12- or 36-month term ending on `end`, and occurs in the 28 days before `end`, in
    time order. With every partner in CSP (`with_programs=True` yields a `csp_direct` program change
    for each of them first, 60 days before `end`, then the `n` purchases) each purchase decides
    `BLOCKED_UNTIL_TERM_END` until `end`, and all `n` change at `end`. Event ids (`stp-{seed}-...` for the
    programs, `st-{seed}-...` for the purchases, which are the same with or without the programs) and
    subscription ids (`S-{customer}-{partner}-st{k}`) never collide with a `WorkloadGenerator` stream's,
    so a storm can be appended to one. The same arguments give the same events.
    """
    if n < 0 or accounts < 1 or partners < 2:
        raise ValueError("storm_events needs n >= 0, accounts >= 1 and partners >= 2")
    rng = random.Random(seed)
    midnight = int(datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp())
    clock = _SecondsClock(datetime.fromtimestamp(midnight, UTC))
    if with_programs:
        at = clock.timestamp(midnight - 60 * 86_400)
        for i in range(partners):
            yield {
                "event_type": "partner_program_changed",
                "event_id": f"stp-{seed}-{i + 1:09d}",
                "occurred_at": at,
                "partner_id": f"P{i:05d}",
                "program": "csp_direct",
                "indirect_provider_ids": [],
            }
    term_end = end.isoformat()
    starts = {months: _add_months(end, -months).isoformat() for months in _TERM_MONTHS}
    span = 28 * 86_400
    counts = [0] * min(accounts, n)
    for j in range(n):
        account = j % accounts
        k = counts[account]
        counts[account] += 1
        p = account % partners
        pid = f"P{p:05d}"
        cid = f"C{account:07d}"
        seller = (p + 1 + int(rng.random() * (partners - 1))) % partners
        months = _TERM_MONTHS[bisect(_TERM_CUM, rng.random() * _TERM_CUM[-1])]
        yield {
            "event_type": "subscription_purchased",
            "event_id": f"st-{seed}-{j + 1:09d}",
            "occurred_at": clock.timestamp(midnight - span + (j * span) // n),
            "partner_id": pid,
            "customer_id": cid,
            "subscription_id": f"S-{cid}-{pid}-st{k}",
            "offer_id": rng.choice(LICENSE_OFFERS),
            "billing_model": "license",
            "channel": "csp",
            "seller_partner_id": f"P{seller:05d}",
            "quantity": 1 + int(rng.random() * 500),
            "term_start": starts[months],
            "term_end": term_end,
        }

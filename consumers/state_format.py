"""The changelog's own encoding of an account: compact, versioned, and fast both ways.

The changelog is internal to the service, so it need not be the nested Avro record of
`schemas/account_state.avsc` (about 150 µs to encode an account of eight subscriptions through
fastavro). A value is a format byte, a header line and the account, both JSON arrays (orjson,
written and read in native code):

    0x02 [partner, customer, sellers, pending_deadlines, partner_view, evaluated_at] \n
         [partner, customer, relationship, delegated_admin, subscriptions, status, recent_ids, evaluated_at]

The header is what a restore needs to hold the account without building it (`Classifier.hold`): its
indexes, the term ends it has not passed, and the partner view its verdicts were made with
(`Classifier.partner_view`, an object of strings; the string `version|event_id,...` in values written
before). The body is decoded on the account's first use. Flags are [active, occurred_at, event_id], a
subscription [id, purchase, cancellation, renewal, verdict], events arrays of their fields (the
account's ids not repeated). Times are ISO 8601 in UTC ending in Z, and dates YYYY-MM-DD, as orjson
writes them. Codes (billing model, channel, decision, reason, rule, next actions, customer status) are
their index in the `CODES` tables below; a table only ever grows at its end.

The first byte tells the formats apart, and every one stays readable:
- 0x00: the Confluent framing of the Avro record of the first release (decoded through the registry by
  the caller);
- 0x01: this layout with codes as their names and times ending in +00:00 (a third larger: a restore
  reads values about 2.7 KB long instead of 1.8 KB for an account of eight subscriptions);
- 0x02: the format written now.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from enum import Enum
from typing import Any, Final, NamedTuple

import orjson

from multichannel.engine import Held, SavedView
from multichannel.model import (
    CSP_PROGRAMS,
    BillingModel,
    Channel,
    CustomerStatus,
    Decision,
    NextAction,
    Program,
    Reason,
    Rule,
    SubscriptionCancelled,
    SubscriptionPurchased,
    SubscriptionRenewed,
)
from multichannel.partners import PartnerEntry
from multichannel.state import Account, AccountState, Flag, StatusSnapshot, SubscriptionState, Verdict

AVRO_FORMAT: Final = 0
"""First byte of a value in the Confluent-framed Avro form (the magic byte)."""
COMPACT_V1: Final = 1
COMPACT_V2: Final = 2
_V2 = bytes([COMPACT_V2])

CODES: Final[dict[type[Enum], tuple[str, ...]]] = {
    BillingModel: ("license", "usage"),
    Channel: ("microsoft_direct", "advisor", "open", "enterprise_agreement", "csp", "third_party", "syndication"),
    Decision: (
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        "BLOCKED_UNTIL_TERM_END",
        "MIGRATION_REQUIRED",
        "CSP_SWITCH_PERMITTED",
        "ALREADY_MANAGED",
        "RESALE_NOT_PERMITTED",
        "NOT_APPLICABLE",
    ),
    Reason: (
        "CUSTOMER_IS_CSP_PARTNER",
        "PARTNER_NOT_IN_CSP",
        "SOLD_BY_ACCOUNT_PARTNER",
        "SYNDICATION_CHANNEL",
        "SUBSCRIPTION_CANCELLED",
        "TERM_ENDED",
        "AZURE_FROM_OTHER_CSP_PARTNER",
        "LICENSE_HELD_BY_OTHER_CSP_PARTNER",
        "NO_CSP_MIGRATION_PATH",
        "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END",
        "PURCHASED_FROM_MICROSOFT_OR_VOLUME_CHANNEL",
        "PURCHASED_FROM_PARTNER_AS_ADVISOR",
        "PURCHASED_FROM_NON_CSP_THIRD_PARTY",
        "RESELLER_WITHOUT_INDIRECT_PROVIDER",
    ),
    Rule: ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10"),
    NextAction: (
        "OFFER_CSP_SUBSCRIPTION",
        "REQUEST_AZURE_PARTNER_SWITCH",
        "WAIT_FOR_TERM_END_OR_CANCELLATION",
        "CREATE_CSP_AZURE_SUBSCRIPTION",
        "PORT_DATA_AND_SETTINGS",
        "CUSTOMER_CANCELS_OLD_SUBSCRIPTION",
        "CHECK_SERVICE_AVAILABILITY_IN_CSP",
        "SEND_RELATIONSHIP_REQUEST",
        "OBTAIN_INVITATION_FROM_INDIRECT_PROVIDER",
        "SEND_PROVIDER_INVITATION_TO_CUSTOMER",
        "REQUEST_DELEGATED_ADMIN_FOR_RESELLER",
        "SUPPORT_UNDER_RELATIONSHIP",
        "LINK_INDIRECT_PROVIDER",
    ),
    CustomerStatus: ("MULTICHANNEL", "SINGLE_CHANNEL", "NOT_ELIGIBLE"),
}
"""Format 0x02's code tables: a code is written as its index here. Indexes never change: a new member of
one of these enums is added at the end of its table (a unit test holds every member to a place)."""

_INDEX = {enum: {code: i for i, code in enumerate(codes)} for enum, codes in CODES.items()}
_BILLING_IX, _CHANNEL_IX, _DECISION_IX = _INDEX[BillingModel], _INDEX[Channel], _INDEX[Decision]
_REASON_IX, _RULE_IX, _ACTION_IX, _STATUS_IX = _INDEX[Reason], _INDEX[Rule], _INDEX[NextAction], _INDEX[CustomerStatus]


class _Tables(NamedTuple):
    """How a format writes codes, for the reader: a lookup from what is written to the member."""

    billing: Any
    channel: Any
    decision: Any
    reason: Any
    rule: Any
    action: Any
    status: Any


def _tables(lookup: Callable[[type[Enum]], Any]) -> _Tables:
    return _Tables(*(lookup(e) for e in (BillingModel, Channel, Decision, Reason, Rule, NextAction, CustomerStatus)))


_READ_TABLES = {
    COMPACT_V1: _tables(lambda enum: {m.value: m for m in enum}),  # codes by name
    COMPACT_V2: _tables(lambda enum: tuple(enum(code) for code in CODES[enum])),  # codes by index
}
_UTC_Z = orjson.OPT_UTC_Z


class StateFormatError(ValueError):
    """A changelog value in no format this release reads."""


def _flag(f: Flag | None) -> list[Any] | None:
    return None if f is None else [f.active, f.occurred_at, f.event_id]


def _verdict(v: Verdict | None) -> tuple[Any, ...] | None:
    if v is None:
        return None
    decision, reason, rule, actions, blocked_until, via = v  # unpacked: cheaper than six field reads
    return (
        _DECISION_IX[decision._value_],
        _REASON_IX[reason._value_],
        _RULE_IX[rule._value_],
        [_ACTION_IX[a._value_] for a in actions] if actions else (),
        blocked_until,
        via,
    )


class Header(NamedTuple):
    """What a restore reads of a value without decoding the account."""

    partner_id: str
    customer_id: str
    sellers: list[str]
    deadlines: list[datetime]
    partner_view: SavedView
    evaluated_at: datetime | None


def encode_account(acct: Account, partner_view: SavedView) -> bytes:
    """One account, read from the engine's working copy (no snapshot is made), as a changelog value
    (format 0x02); `partner_view` is `Classifier.partner_view` of the account."""
    subs: list[Any] = []
    sellers: set[str] = set()
    pending: list[datetime] = []
    passed = acct.evaluated_at
    for s in acct.subscriptions.values():
        p, c, r = s.purchase, s.cancellation, s.renewal
        if p is not None and p.seller_partner_id is not None:
            sellers.add(p.seller_partner_id)
        deadline = s.deadline
        if deadline is not None and (passed is None or deadline > passed) and deadline not in pending:
            pending.append(deadline)
        subs.append(
            (
                s.subscription_id,
                None
                if p is None
                else (
                    p.event_id,
                    p.occurred_at,
                    p.offer_id,
                    _BILLING_IX[p.billing_model._value_],
                    _CHANNEL_IX[p.channel._value_],
                    p.seller_partner_id,
                    p.quantity,
                    p.term_start,
                    p.term_end,
                ),
                None if c is None else (c.event_id, c.occurred_at),
                None if r is None else (r.event_id, r.occurred_at, r.term_end),
                _verdict(s.verdict),
            )
        )
    st = acct.status
    header = orjson.dumps(
        [acct.partner_id, acct.customer_id, sorted(sellers), pending, partner_view, passed], None, _UTC_Z
    )
    return (
        _V2
        + header
        + b"\n"
        + orjson.dumps(
            [
                acct.partner_id,
                acct.customer_id,
                _flag(acct.relationship),
                _flag(acct.delegated_admin),
                subs,
                None if st is None else [_STATUS_IX[st._value_], sorted(acct.counts.items())],
                acct.recent,
                acct.evaluated_at,
            ],
            None,
            _UTC_Z,
        )
    )


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def _flag_in(f: list[Any] | None) -> Flag | None:
    return None if f is None else Flag(f[0], _ts(f[1]), f[2])


def _check(value: bytes) -> _Tables:
    """The code tables of the value's format (StateFormatError for a format this reader does not know)."""
    tables = _READ_TABLES.get(value[0]) if value else None
    if tables is None:
        raise StateFormatError(f"changelog value format {value[:1].hex() or 'empty'} is not 01 or 02")
    return tables


def read_header(value: bytes) -> Header:
    """The header of one value of format 0x01 or 0x02 (StateFormatError for any other): `read_headers`
    of that value alone."""
    [(pid, cid, sellers, deadlines, view, _value)], evaluated = read_headers([value])
    return Header(pid, cid, list(sellers), list(deadlines), view, evaluated)


def read_headers(values: Sequence[bytes]) -> tuple[list[Held], datetime | None]:
    """The headers of many values of format 0x01 or 0x02, as `Classifier.hold_all` takes them (each distinct
    time parsed once), and the latest `evaluated_at` among them."""
    for value in values:
        _check(value)
    loads = orjson.loads
    heads = [loads(v[1 : v.index(b"\n")]) for v in values]
    times: dict[str, datetime] = {}
    latest: datetime | None = None
    held: list[Held] = []
    for (pid, cid, sellers, deadlines, view, evaluated), value in zip(heads, values, strict=True):
        due = []
        for text in deadlines:
            at = times.get(text)
            if at is None:
                at = times[text] = _ts(text)
            due.append(at)
        held.append((pid, cid, sellers, due, view, value))
        if evaluated is not None:
            at = times.get(evaluated)
            if at is None:
                at = times[evaluated] = _ts(evaluated)
            if latest is None or at > latest:
                latest = at
    return held, latest


def decode_state(value: bytes) -> AccountState:
    """A changelog value of format 0x01 or 0x02 as the account it holds (StateFormatError for any other)."""
    billing, channel, decision, reason, rule, action, status = _check(value)
    pid, cid, rel, admin, subs_in, st, recent, evaluated = orjson.loads(value[value.index(b"\n") + 1 :])
    subs: dict[str, SubscriptionState] = {}
    for sid, p, c, r, v in subs_in:
        subs[sid] = SubscriptionState(
            sid,
            None
            if p is None
            else SubscriptionPurchased(
                p[0],
                _ts(p[1]),
                pid,
                cid,
                sid,
                p[2],
                billing[p[3]],
                channel[p[4]],
                p[5],
                p[6],
                _day(p[7]),
                _day(p[8]),
            ),
            None if c is None else SubscriptionCancelled(c[0], _ts(c[1]), pid, cid, sid),
            None if r is None else SubscriptionRenewed(r[0], _ts(r[1]), pid, cid, sid, date.fromisoformat(r[2])),
            None
            if v is None
            else Verdict(
                decision[v[0]],
                reason[v[1]],
                rule[v[2]],
                tuple([action[a] for a in v[3]]),
                _day(v[4]),
                tuple(v[5]),
            ),
        )
    return AccountState(
        pid,
        cid,
        _flag_in(rel),
        _flag_in(admin),
        subs,
        None if st is None else StatusSnapshot(status[st[0]], tuple((k, n) for k, n in st[1])),
        tuple(recent),
        None if evaluated is None else _ts(evaluated),
    )


PARTNER_ENTRY_FORMAT: Final = b"\x03P"
"""First bytes of a partner-table value (`encode_partner_entry`)."""


def encode_partner_entry(partner_id: str, entry: PartnerEntry) -> bytes:
    """A partner-table value: `0x03 P` and [partner, program, providers, occurred_at, event_id, recent_ids]."""
    occurred_at, event_id = entry.order
    return PARTNER_ENTRY_FORMAT + orjson.dumps(
        [partner_id, entry.program._value_, entry.indirect_provider_ids, occurred_at, event_id, entry.recent_event_ids],
        None,
        _UTC_Z,
    )


def decode_partner_entry(value: bytes) -> tuple[str, PartnerEntry]:
    """The partner id and entry of a partner-table value (StateFormatError for any other value)."""
    if not value.startswith(PARTNER_ENTRY_FORMAT):
        raise StateFormatError(f"partner table value format {value[:2].hex() or 'empty'} is not 0350")
    pid, program_code, providers, occurred_at, event_id, recent = orjson.loads(value[2:])
    program = Program(program_code)
    return pid, PartnerEntry(
        program,
        tuple(providers),
        (_ts(occurred_at), event_id),
        event_id,
        tuple(recent),
        program in CSP_PROGRAMS,
    )

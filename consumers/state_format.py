"""The changelog's own encoding of an account: compact, versioned, and fast both ways.

The changelog is internal to the service, so it need not be the nested Avro record of
`schemas/account_state.avsc` (about 150 µs to encode an account of eight subscriptions through
fastavro). A value is a format byte, a header line and the account, both JSON arrays (orjson,
written and read in native code):

    0x01 [partner, customer, sellers, pending_deadlines, partner_view, evaluated_at] \n
         [partner, customer, relationship, delegated_admin, subscriptions, status, recent_ids, evaluated_at]

The header is what a restore needs to hold the account without building it (`Classifier.hold`): its
indexes, the term ends it has not passed, and the partner view its verdicts were made with. The
body is decoded on the account's first use. Flags are [active, occurred_at, event_id], a
subscription [id, purchase, cancellation, renewal, verdict], events arrays of their fields (the
account's ids not repeated). Times are ISO 8601 in UTC and dates YYYY-MM-DD, as orjson writes them.

The first byte tells the formats apart: 0x00 is the Confluent framing of the Avro record the earlier
release wrote (decoded through the registry by the caller), 0x01 this format; a later format takes
0x02 and this reader stays.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Final, NamedTuple

import orjson

from multichannel.model import (
    BillingModel,
    Channel,
    CustomerStatus,
    Decision,
    NextAction,
    Reason,
    Rule,
    SubscriptionCancelled,
    SubscriptionPurchased,
    SubscriptionRenewed,
)
from multichannel.state import Account, AccountState, Flag, StatusSnapshot, SubscriptionState, Verdict

AVRO_FORMAT: Final = 0
"""First byte of a value in the Confluent-framed Avro form (the magic byte)."""
COMPACT_V1: Final = 1
_V1 = bytes([COMPACT_V1])

_BILLING = {m.value: m for m in BillingModel}
_CHANNEL = {m.value: m for m in Channel}
_DECISION = {m.value: m for m in Decision}
_REASON = {m.value: m for m in Reason}
_RULE = {m.value: m for m in Rule}
_ACTION = {m.value: m for m in NextAction}
_STATUS = {m.value: m for m in CustomerStatus}


class StateFormatError(ValueError):
    """A changelog value in no format this release reads."""


def _flag(f: Flag | None) -> list[Any] | None:
    return None if f is None else [f.active, f.occurred_at, f.event_id]


class Header(NamedTuple):
    """What a restore reads of a value without decoding the account."""

    partner_id: str
    customer_id: str
    sellers: list[str]
    deadlines: list[datetime]
    partner_view: str
    evaluated_at: datetime | None


def encode_account(acct: Account, partner_view: str) -> bytes:
    """One account, read from the engine's working copy (no snapshot is made), as a changelog value
    (format 0x01); `partner_view` is `Classifier.partner_view` of the account."""
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
                    p.billing_model,  # orjson writes an enum member as its value
                    p.channel,
                    p.seller_partner_id,
                    p.quantity,
                    p.term_start,
                    p.term_end,
                ),
                None if c is None else (c.event_id, c.occurred_at),
                None if r is None else (r.event_id, r.occurred_at, r.term_end),
                None if (v := s.verdict) is None else tuple(v),  # a plain tuple of the verdict's fields
            )
        )
    st = acct.status
    header = orjson.dumps([acct.partner_id, acct.customer_id, sorted(sellers), pending, partner_view, passed])
    return (
        _V1
        + header
        + b"\n"
        + orjson.dumps(
            [
                acct.partner_id,
                acct.customer_id,
                _flag(acct.relationship),
                _flag(acct.delegated_admin),
                subs,
                None if st is None else [st._value_, sorted(acct.counts.items())],
                acct.recent,
                acct.evaluated_at,
            ]
        )
    )


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def _flag_in(f: list[Any] | None) -> Flag | None:
    return None if f is None else Flag(f[0], _ts(f[1]), f[2])


def _check(value: bytes) -> None:
    if not value or value[0] != COMPACT_V1:
        raise StateFormatError(f"changelog value format {value[:1].hex() or 'empty'} is not {_V1.hex()}")


def read_header(value: bytes) -> Header:
    """The header of a value of format 0x01 (StateFormatError for any other)."""
    _check(value)
    end = value.index(b"\n")
    pid, cid, sellers, deadlines, view, evaluated = orjson.loads(value[1:end])
    return Header(pid, cid, sellers, [_ts(d) for d in deadlines], view, None if evaluated is None else _ts(evaluated))


def decode_state(value: bytes) -> AccountState:
    """A changelog value of format 0x01 as the account it holds (StateFormatError for any other)."""
    _check(value)
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
                _BILLING[p[3]],
                _CHANNEL[p[4]],
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
                _DECISION[v[0]],
                _REASON[v[1]],
                _RULE[v[2]],
                tuple(_ACTION[a] for a in v[3]),
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
        None if st is None else StatusSnapshot(_STATUS[st[0]], tuple((k, n) for k, n in st[1])),
        tuple(recent),
        None if evaluated is None else _ts(evaluated),
    )

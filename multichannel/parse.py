"""Validation of input records into events: the one place where bad input is recognised.

Accepts the contract's fields as JSON gives them (ISO 8601 strings) or as Avro decoding gives
them (datetime/date objects); `None` means absent. Raises only `InvalidEvent` subclasses, with
the stable reason codes of the contract. Hand-written checks, no model library per event: this
runs once per input record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from functools import lru_cache
from sys import intern
from typing import Any

from multichannel.errors import InvalidField, UnknownEventType
from multichannel.model import (
    BillingModel,
    Channel,
    Commerce,
    DelegatedAdminGranted,
    DelegatedAdminRevoked,
    Event,
    EventType,
    PartnerProgramChanged,
    Program,
    RelationshipAccepted,
    RelationshipEnded,
    SubscriptionCancelled,
    SubscriptionPurchased,
    SubscriptionRenewed,
)

_BILLING = {m.value: m for m in BillingModel}
_CHANNEL = {m.value: m for m in Channel}
_PROGRAM = {m.value: m for m in Program}
_COMMERCE = {m.value: m for m in Commerce}
_SELLER_REQUIRED = frozenset({Channel.CSP, Channel.THIRD_PARTY})
_SELLER_OPTIONAL = frozenset({Channel.ADVISOR, Channel.SYNDICATION})
_TIMESTAMP_FORM = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)
"""The one timestamp form of the contract (RFC 3339's ISO 8601 profile; no offset is read as UTC).
`datetime.fromisoformat` alone also takes week dates, basic forms, a space for `T` and more."""
_DATE_FORM = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MAX_ID_CHARS = 256
"""Longest id (event, partner, customer, subscription, offer): ids travel into every decision, status and
changelog record, so an id of megabytes would make records the brokers refuse."""
MAX_PROVIDERS = 100
"""Most `indirect_provider_ids` of one partner event: they travel into every R9 and R10 decision."""
MAX_QUANTITY = 2**31 - 1
"""The largest seat count the Avro `int` of the input and changelog schemas can carry."""
_LICENSE, _RESELLER = BillingModel.LICENSE, Program.CSP_INDIRECT_RESELLER  # enum class attribute reads are slow
_LEGACY = Commerce.LEGACY


def _id(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise InvalidField(f"{name} is missing")
    if type(value) is not str:
        raise InvalidField(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidField(f"{name} must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise InvalidField(f"{name} has {len(value)} characters, more than {MAX_ID_CHARS}")
    return value


def _shared_id(obj: Mapping[str, Any], name: str) -> str:
    """An id that many events repeat (partner, customer, offer, seller), interned: the state keeps one
    string per distinct id instead of one per event that carries it."""
    return intern(_id(obj, name))


def _timestamp(obj: Mapping[str, Any], name: str) -> datetime:
    value = obj.get(name)
    if value is None:
        raise InvalidField(f"{name} is missing")
    if isinstance(value, str):
        if _TIMESTAMP_FORM.fullmatch(value) is None:
            raise InvalidField(f"{name} {value!r} is not an ISO 8601 timestamp such as 2026-03-01T09:30:00Z")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:  # the form is right, a value is out of range (month 13, hour 24, ...)
            raise InvalidField(f"{name} {value!r} is not a valid timestamp") from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise InvalidField(f"{name} must be a timestamp, got {type(value).__name__}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    elif parsed.utcoffset():
        try:
            parsed = parsed.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+05:00 is before the first instant a datetime holds
            raise InvalidField(f"{name} {value!r} is out of the range of timestamps") from None
    elif parsed.tzinfo is not UTC:
        parsed = parsed.replace(tzinfo=UTC)
    micro = parsed.microsecond
    if micro % 1000:
        parsed = parsed.replace(microsecond=micro - micro % 1000)
    return parsed


def _date(obj: Mapping[str, Any], name: str) -> date:
    value = obj.get(name)
    if value is None:
        raise InvalidField(f"{name} is missing")
    if isinstance(value, str):
        if _DATE_FORM.fullmatch(value) is None:
            raise InvalidField(f"{name} {value!r} is not a YYYY-MM-DD date")
        try:
            return _shared_date(date.fromisoformat(value))
        except ValueError:
            raise InvalidField(f"{name} {value!r} is not a YYYY-MM-DD date") from None
    if isinstance(value, datetime):
        raise InvalidField(f"{name} must be a date, not a timestamp")
    if isinstance(value, date):
        return _shared_date(value)
    raise InvalidField(f"{name} must be a date, got {type(value).__name__}")


@lru_cache(maxsize=1 << 14)
def _shared_date(value: date) -> date:
    """One object per distinct date (a stream has few: term starts and ends fall on a few thousand days),
    so that the state does not keep a copy per event: the cache hands back the first equal date it saw."""
    return value


def _optional_date(obj: Mapping[str, Any], name: str) -> date | None:
    """A date field of contract 1.1: absent or null is None; a present value is checked as `_date` does."""
    return None if obj.get(name) is None else _date(obj, name)


def _optional_timestamp(obj: Mapping[str, Any], name: str) -> datetime | None:
    """A timestamp field of contract 1.1: absent or null is None; a present value is checked as `_timestamp` does."""
    return None if obj.get(name) is None else _timestamp(obj, name)


def _commerce(obj: Mapping[str, Any]) -> Commerce:
    """`commerce` of a purchase (contract 1.1): `legacy` when absent or null."""
    return Commerce.LEGACY if obj.get("commerce") is None else _enum(obj, "commerce", _COMMERCE)


def _expert_msp(obj: Mapping[str, Any]) -> bool:
    """`azure_expert_msp` of a partner event (contract 1.1): false when absent or null."""
    value = obj.get("azure_expert_msp")
    if value is None:
        return False
    if type(value) is not bool:
        raise InvalidField(f"azure_expert_msp must be a boolean, got {type(value).__name__}")
    return value


def _enum(obj: Mapping[str, Any], name: str, members: Mapping[str, Any]) -> Any:
    value = obj.get(name)
    if value is None:
        raise InvalidField(f"{name} is missing")
    member = members.get(value) if isinstance(value, str) else None
    if member is None:
        raise InvalidField(f"{name} {value!r} is not one of {', '.join(members)}")
    return member


def _purchased(obj: Mapping[str, Any], event_id: str, at: datetime, pid: str, cid: str) -> SubscriptionPurchased:
    sid = _id(obj, "subscription_id")
    offer = _shared_id(obj, "offer_id")
    billing: BillingModel = _enum(obj, "billing_model", _BILLING)
    channel: Channel = _enum(obj, "channel", _CHANNEL)
    seller: str | None = None
    if channel in _SELLER_REQUIRED or (channel in _SELLER_OPTIONAL and obj.get("seller_partner_id") is not None):
        seller = _shared_id(obj, "seller_partner_id")
    quantity: int | None = None
    term_start: date | None = None
    term_end: date | None = None
    # contract 1.1's fields are checked whatever the billing model, and kept for a license only
    commerce = _commerce(obj)
    window_end = _optional_date(obj, "cancellation_allowed_until")
    if billing is _LICENSE:
        q = obj.get("quantity")
        if q is None:
            raise InvalidField("quantity is required for a license-based subscription")
        if type(q) is not int:
            raise InvalidField(f"quantity must be an integer, got {type(q).__name__}")
        if not 1 <= q <= MAX_QUANTITY:
            raise InvalidField(f"quantity must be from 1 to {MAX_QUANTITY}, got {q}")
        quantity = q
        term_start = _date(obj, "term_start")
        term_end = _date(obj, "term_end")
        if term_end <= term_start:
            raise InvalidField(f"term_end {term_end} is not after term_start {term_start}")
    else:
        commerce, window_end = _LEGACY, None
    return SubscriptionPurchased(
        event_id,
        at,
        pid,
        cid,
        sid,
        offer,
        billing,
        channel,
        seller,
        quantity,
        term_start,
        term_end,
        commerce,
        window_end,
    )


def _provider_ids(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """A list of non-empty partner ids (absent or null: none), whatever the program: a value of another
    shape is impossible for any partner event (the Avro schema could not even carry it)."""
    raw = obj.get("indirect_provider_ids")
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        raise InvalidField("indirect_provider_ids must be a list of partner ids")
    if len(raw) > MAX_PROVIDERS:
        raise InvalidField(f"indirect_provider_ids has {len(raw)} ids, more than {MAX_PROVIDERS}")
    if any(type(p) is not str or not p.strip() or len(p) > MAX_ID_CHARS for p in raw):
        raise InvalidField(f"indirect_provider_ids must hold non-empty ids of at most {MAX_ID_CHARS} characters")
    return tuple(dict.fromkeys(raw))


def _account_ids(obj: Mapping[str, Any]) -> tuple[str, str]:
    return _shared_id(obj, "partner_id"), _shared_id(obj, "customer_id")


def _build(obj: Mapping[str, Any], kind: str, event_id: str, at: datetime) -> Event:
    if kind == "subscription_purchased":
        pid, cid = _account_ids(obj)
        return _purchased(obj, event_id, at, pid, cid)
    if kind == "partner_program_changed":
        pid = _id(obj, "partner_id")
        program: Program = _enum(obj, "program", _PROGRAM)
        providers = _provider_ids(obj)
        # the providers of a program other than a reseller are kept by nobody (contract: "else empty")
        expert = _expert_msp(obj)
        return PartnerProgramChanged(event_id, at, pid, program, providers if program is _RESELLER else (), expert)
    pid, cid = _account_ids(obj)
    if kind == "subscription_cancelled":
        return SubscriptionCancelled(event_id, at, pid, cid, _id(obj, "subscription_id"))
    if kind == "subscription_renewed":
        sid, end = _id(obj, "subscription_id"), _date(obj, "term_end")
        return SubscriptionRenewed(event_id, at, pid, cid, sid, end, _optional_date(obj, "cancellation_allowed_until"))
    if kind == "delegated_admin_granted":
        return DelegatedAdminGranted(event_id, at, pid, cid, _optional_timestamp(obj, "expires_at"))
    simple: Callable[[str, datetime, str, str], Event] = _SIMPLE[kind]
    return simple(event_id, at, pid, cid)


_SIMPLE: dict[str, Callable[[str, datetime, str, str], Event]] = {
    "relationship_accepted": RelationshipAccepted,
    "relationship_ended": RelationshipEnded,
    "delegated_admin_revoked": DelegatedAdminRevoked,
}
"""The event types of no fields but the common ones (a grant has contract 1.1's `expires_at`)."""
_KNOWN = frozenset(t.value for t in EventType)
_ACCOUNT_KINDS = _KNOWN - {EventType.PARTNER_PROGRAM_CHANGED.value}


def parse_event(obj: Mapping[str, Any]) -> Event:
    """Validate one input record (contract field names) into an event, or raise InvalidEvent."""
    if type(obj) is not dict and not isinstance(obj, Mapping):  # the ABC check is slow: dicts skip it
        raise InvalidField(f"an event must be an object, got {type(obj).__name__}")
    kind = obj.get("event_type")
    if not isinstance(kind, str):
        raise UnknownEventType("event_type is missing" if kind is None else "event_type must be a string")
    if kind not in _KNOWN:
        raise UnknownEventType(f"unknown event_type {kind!r}")
    event_id = _id(obj, "event_id")
    at = _timestamp(obj, "occurred_at")
    return _build(obj, kind, event_id, at)


def _typed_id(value: str | None) -> bool:
    """`_id`'s checks of a value known to be a str or None: present, not blank, not too long
    (`str.isspace` and `str.strip` agree on what whitespace is)."""
    return value is not None and len(value) <= MAX_ID_CHARS and bool(value) and not value.isspace()


def typed_subscription_event(fields: tuple[Any, ...]) -> Event | None:
    """The event of a subscription record whose fields the Avro schema has already typed, or None
    when any contract check fails: the caller then runs `parse_event` on the record, which says why.

    `fields` are the values of the contract's subscription event, in its order (event_type, event_id,
    occurred_at, partner_id, customer_id, subscription_id, offer_id, billing_model, channel,
    seller_partner_id, quantity, term_start, term_end, then contract 1.1's commerce,
    cancellation_allowed_until, expires_at), typed as Avro decodes them: strings, UTC datetimes,
    enum symbols as str, an int, dates, None for absent. The type checks of `parse_event` are the
    schema's, so only the contract's value checks are left to make; this is the same event
    `parse_event` makes of the record (a property test holds them together).
    """
    (
        kind, event_id, at, pid, cid, sid, offer, billing_value, channel_value, seller, q, start, end,
        commerce_value, window_end, expires_at,
    ) = fields  # fmt: skip
    if (  # the checks of the three strings every subscription record has, inline: `_typed_id` less None
        not (0 < len(event_id) <= MAX_ID_CHARS and 0 < len(pid) <= MAX_ID_CHARS and 0 < len(cid) <= MAX_ID_CHARS)
        or event_id.isspace()
        or pid.isspace()
        or cid.isspace()
        or kind not in _ACCOUNT_KINDS
        or at.tzinfo is not UTC
        or at.microsecond % 1000
    ):
        return None
    pid, cid = intern(pid), intern(cid)
    if kind == "subscription_purchased":
        billing = _BILLING.get(billing_value) if billing_value is not None else None
        channel = _CHANNEL.get(channel_value) if channel_value is not None else None
        # commerce is checked whatever the billing model, as `_purchased` checks it; None is the parser's absent
        commerce = _COMMERCE.get(commerce_value) if commerce_value is not None else _LEGACY
        if billing is None or channel is None or commerce is None or not (_typed_id(sid) and _typed_id(offer)):
            return None
        if channel in _SELLER_REQUIRED or (channel in _SELLER_OPTIONAL and seller is not None):
            if not _typed_id(seller):
                return None
            seller = intern(seller)
        else:
            seller = None
        if billing is _LICENSE:
            if q is None or not 1 <= q <= MAX_QUANTITY or start is None or end is None or end <= start:
                return None
            start, end = _shared_date(start), _shared_date(end)
            if window_end is not None:
                window_end = _shared_date(window_end)
        else:
            q = start = end = window_end = None
            commerce = _LEGACY
        offer = intern(offer)
        return SubscriptionPurchased(
            event_id, at, pid, cid, sid, offer, billing, channel, seller, q, start, end, commerce, window_end
        )
    if kind == "subscription_cancelled":
        return SubscriptionCancelled(event_id, at, pid, cid, sid) if _typed_id(sid) else None
    if kind == "subscription_renewed":
        if not _typed_id(sid) or end is None:
            return None
        window = None if window_end is None else _shared_date(window_end)
        return SubscriptionRenewed(event_id, at, pid, cid, sid, _shared_date(end), window)
    if kind == "delegated_admin_granted":
        if expires_at is not None and (expires_at.tzinfo is not UTC or expires_at.microsecond % 1000):
            return None
        return DelegatedAdminGranted(event_id, at, pid, cid, expires_at)
    return _SIMPLE[kind](event_id, at, pid, cid)


def event_to_dict(event: Event) -> dict[str, Any]:
    """The contract dict of an event (python date/datetime values, enums as str), every field present."""
    out: dict[str, Any] = {
        "event_type": event.event_type.value,
        "event_id": event.event_id,
        "occurred_at": event.occurred_at,
    }
    if isinstance(event, PartnerProgramChanged):
        out["partner_id"] = event.partner_id
        out["program"] = event.program.value
        out["indirect_provider_ids"] = list(event.indirect_provider_ids)
        out["azure_expert_msp"] = event.azure_expert_msp
        return out
    out["partner_id"] = event.partner_id
    out["customer_id"] = event.customer_id
    if isinstance(event, SubscriptionPurchased):
        out.update(
            subscription_id=event.subscription_id,
            offer_id=event.offer_id,
            billing_model=event.billing_model.value,
            channel=event.channel.value,
            seller_partner_id=event.seller_partner_id,
            quantity=event.quantity,
            term_start=event.term_start,
            term_end=event.term_end,
            commerce=event.commerce.value,
            cancellation_allowed_until=event.cancellation_allowed_until,
        )
    elif isinstance(event, SubscriptionCancelled):
        out["subscription_id"] = event.subscription_id
    elif isinstance(event, SubscriptionRenewed):
        out["subscription_id"] = event.subscription_id
        out["term_end"] = event.term_end
        out["cancellation_allowed_until"] = event.cancellation_allowed_until
    elif isinstance(event, DelegatedAdminGranted):
        out["expires_at"] = event.expires_at
    return out


def parse_timestamp(value: object, name: str = "timestamp") -> datetime:
    """A timestamp as events carry it (ISO 8601 string or datetime), in UTC; InvalidField otherwise."""
    return _timestamp({name: value}, name)
